"""`AliceSim` (clients, faults, limits and dispatch) and the threaded HTTP server that carries it.

    running = start(port=0)                       # 127.0.0.1, ephemeral ports, daemon threads
    client = running.sim.store.register(user_id="C1")
    token = running.sim.store.open("C1")          # or the vendor login with an auth code
    AliceBroker(user_id="C1", api_key=client.app_code, access_token=token, root=running.root)
    running.sim.set_faults(user_id="C1", timeout_after_place={"sleep_s": 2.0})
    running.stop()

Each request runs in its own thread with its own database connection, closed when the request
ends; tests must commit what the server is to see (`django_db(transaction=True)`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any, NamedTuple

from brokers.errors import BrokerError, InputRejected, OrderRejected
from brokers.paper.models import PaperInstrument
from lab import sim_http
from lab.alice_sim import payloads
from lab.alice_sim.auth import AliceAuthError, ClientStore
from lab.alice_sim.routes import WRITES, AliceError, Call, refusal, resolve
from lab.alice_sim.ws import OrderFeed
from lab.kite_sim.faults import Faults, FaultSpecError
from lab.kite_sim.selectors import sim_instrument_list
from lab.kite_sim.wire import Request, Response
from lab.sim_faults import AcceptedWrites
from lab.sim_http import RunningHttp, ServerFault, SimServer
from lab.sim_http import WriteLimiter as SimWriteLimiter

logger = logging.getLogger(__name__)

WRITE_WINDOWS = ((1.0, 10),)  # SEBI's 10 orders a second per client (Alice Blue: "NOT LIMITED")


class RateLimitBreach(Exception):
    """Answered 429 (Alice Blue does not document the answer: the status is what matters)."""


class Hit(NamedTuple):
    user_id: str
    route: str
    status: int


class WriteLimiter(SimWriteLimiter):
    """The order-write window per user id. A refused write does not count."""

    default_windows = WRITE_WINDOWS


def _broker_error(exc: BrokerError) -> Response:
    if isinstance(exc, InputRejected):
        text = exc.message
        if "Couldn't find" in text or "not found" in text.lower():
            return refusal("EC994", "The given 'brokerOrderId' is not in your order book.")
        return refusal("EC993", text)
    if isinstance(exc, OrderRejected):
        return refusal("EC993", exc.message)
    return refusal("EC003", "An error occurred. Please try again later.")


class AliceSim:
    """The simulator's state and dispatch (no sockets: `handle` takes a `Request`)."""

    def __init__(
        self,
        *,
        store: ClientStore | None = None,
        faults: Faults | None = None,
        limiter: WriteLimiter | None = None,
        unlisted: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store or ClientStore()
        self.faults = faults or Faults()
        self.limiter = limiter or WriteLimiter()
        self.unlisted = unlisted  # paper trading symbols left out of the contract master
        self.feed = OrderFeed()
        self._lock = threading.Lock()
        self._accepted = AcceptedWrites(self.faults)
        self.protection: dict[str, Decimal | None] = {}  # order id -> marketProtectionPercent sent
        self.hits: Counter[Hit] = Counter()

    def handle(self, request: Request) -> Response:
        route_name, user_id = f"{request.method} ?", ""
        try:
            found = resolve(request.method, request.path)
            if found is None:
                response = Response.json_body({"status": "Not_ok", "message": "Not found"}, 404)
            else:
                route, args = found
                route_name = route.path
                user_id = self.store.authenticate(request.header("authorization")) if route.auth else ""
                if not route.admin:
                    delay = self.faults.latency_s(user_id or None)
                    if delay > 0:
                        time.sleep(delay)
                response = route.handler(Call(self, request, user_id, args))
        except AliceAuthError as exc:
            if exc.code:
                response = refusal(exc.code, exc.message, exc.status)
            else:  # the vendor login's own shape
                response = Response.json_body({"stat": "Not_ok", "emsg": exc.message}, exc.status)
        except RateLimitBreach:
            response = Response.json_body({"status": "Not_ok", "message": "Too many requests"}, 429)
        except AliceError as exc:
            response = refusal(exc.code, exc.message, exc.http_status)
        except FaultSpecError as exc:
            response = Response.json_body({"message": str(exc)}, 400)
        except ServerFault as exc:
            response = Response(status=exc.status, body=b"<html>Bad Gateway</html>", content_type="text/html")
        except BrokerError as exc:
            response = _broker_error(exc)
        except Exception:
            logger.exception("alice_sim: %s %s failed", request.method, request.path)
            response = refusal("EC003", "An error occurred. Please try again later.", 500)
        with self._lock:
            self.hits[Hit(user_id, route_name, response.status)] += 1
        return response

    def hit_count(
        self, *, user_id: str | None = None, route: str | None = None, status: int | None = None
    ) -> int:
        """Requests answered; `route` is matched as a suffix of the path (`placeorder`)."""
        with self._lock:
            return sum(
                n
                for hit, n in self.hits.items()
                if (user_id is None or hit.user_id == user_id)
                and (route is None or hit.route.endswith(route))
                and (status is None or hit.status == status)
            )

    # --- limits, faults ----------------------------------------------------------------------

    def order_write_gate(self, user_id: str) -> None:
        gate = self.faults.on_order_write(user_id)
        if gate.expire_token:
            self.store.expire(user_id=user_id)
            raise AliceAuthError("EC087", "Session Expired", status=401)
        if gate.rate_limited or not self.limiter.allow(user_id):
            raise RateLimitBreach()

    def after_accept(self, user_id: str, *, order_id: str, placed: bool) -> None:
        self._accepted.after_accept(user_id, order_id=order_id, placed=placed)

    def record_protection(self, order_id: str, protection: Decimal | None) -> None:
        with self._lock:
            self.protection[order_id] = protection

    def visible(self, order_id: str) -> bool:
        return self._accepted.visible(order_id)

    def set_faults(self, *, user_id: str | None = None, **spec: Any) -> dict[str, Any]:
        """lab.kite_sim's fault spec, per user id (or global)."""
        user_id = user_id.upper() if user_id else None
        state = self.faults.set(user_id=user_id, **spec)
        if spec.get("expire_token") == "now":
            self.store.expire(user_id=user_id)
        return state

    def clear_faults(self) -> None:
        self.faults.clear()

    def configure(self, config: dict[str, Any]) -> None:
        """Load `{"clients": [{user_id, app_code?, api_secret?}], "faults": [{user_id?, ...spec}]}`."""
        unknown = set(config) - {"clients", "faults"}
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        for entry in config.get("clients", []):
            self.store.register(
                user_id=str(entry["user_id"]),
                app_code=str(entry.get("app_code", "")),
                api_secret=str(entry.get("api_secret", "")),
            )
        for spec in config.get("faults", []):
            spec = dict(spec)
            user_id = spec.pop("user_id", None)
            self.set_faults(user_id=user_id, **spec)

    def instruments_by_token(self) -> dict[tuple[str, str], PaperInstrument]:
        return {(row.exchange, str(row.instrument_token)): row for row in sim_instrument_list()}

    def instruments_by_symbol(self) -> dict[tuple[str, str], PaperInstrument]:
        return {(row.exchange, payloads.alice_symbol(row)): row for row in sim_instrument_list()}


# --- the HTTP server (lab.sim_http) ----------------------------------------------------------


class RunningSim(RunningHttp[AliceSim]):
    """The Alice Blue simulator served on 127.0.0.1, with its order feed."""

    @property
    def root(self) -> str:
        """The base URL the SDK wants (with its trailing `/`)."""
        return f"{super().root}/"

    @property
    def ws_root(self) -> str:
        return self.sim.feed.url

    def stop(self) -> None:
        self.sim.feed.stop()
        super().stop()


def make_server(sim: AliceSim, *, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    return sim_http.make_server(sim, host=host, port=port)


def start(
    *,
    sim: AliceSim | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    ws_port: int = 0,
    feed: bool = True,
) -> RunningSim:
    """Serve `sim` on host:port (0 = any free port), and its order feed on host:ws_port."""
    sim = sim or AliceSim()
    server = make_server(sim, host=host, port=port)
    thread = sim_http.serve(server, name="alice-sim")
    if feed:
        sim.feed.start(host=host, port=ws_port)
    return RunningSim(sim=sim, server=server, thread=thread)


__all__ = ["WRITES", "AliceSim", "RunningSim", "WriteLimiter", "make_server", "start"]
