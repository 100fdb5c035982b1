"""`AngelSim` (clients, faults, limits and dispatch) and the threaded HTTP server that carries it.

    running = start(port=0)                       # 127.0.0.1, an ephemeral port, a daemon thread
    client = running.sim.store.register(client_code="C1")
    AngelBroker(api_key=client.api_key, client_code="C1", pin=client.pin,
                totp_secret=client.totp_secret, root=running.root)
    running.sim.set_faults(client_code="C1", timeout_after_place={"sleep_s": 2.0})
    running.stop()

Each request runs in its own thread with its own database connection, closed when the request
ends; tests must commit what the server is to see (`django_db(transaction=True)`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any, NamedTuple

from brokers.errors import BrokerError, InputRejected, OrderRejected
from brokers.paper.models import PaperInstrument
from lab import sim_http
from lab.angel_sim.auth import AngelAuthError, ClientStore
from lab.angel_sim.routes import WRITES, AngelError, Call, refusal, resolve
from lab.kite_sim.faults import Faults, FaultSpecError
from lab.kite_sim.selectors import sim_instrument_list
from lab.kite_sim.wire import Request, Response
from lab.sim_faults import AcceptedWrites
from lab.sim_http import RunningHttp, ServerFault, SimServer
from lab.sim_http import WriteLimiter as SimWriteLimiter

logger = logging.getLogger(__name__)

RATE_LIMIT_TEXT = b"Access denied because of exceeding access rate"
WRITE_WINDOWS = ((1.0, 9), (60.0, 500), (3600.0, 1000))  # place + modify + cancel, per client code
READ_GAPS = {"book": 1.0, "positions": 1.0}  # one call a second


class RateLimitBreach(Exception):
    """Answered 403 with Angel's plain-text body (the SDK raises DataException on it)."""


class Hit(NamedTuple):
    client_code: str
    route: str
    status: int


class WriteLimiter(SimWriteLimiter):
    """Angel's order-write windows per client code. A refused write does not count."""

    default_windows = WRITE_WINDOWS


def _broker_error(exc: BrokerError) -> Response:
    if isinstance(exc, InputRejected):
        text = exc.message
        if "Couldn't find" in text or "not found" in text.lower():
            return refusal("AB1013", "Order not found")
        return refusal("AB4000", text)
    if isinstance(exc, OrderRejected):
        return refusal("AB4001", exc.message)
    return refusal("AB1004", "Something Went Wrong, Please Try After Sometime")


class AngelSim:
    """The simulator's state and dispatch (no sockets: `handle` takes a `Request`)."""

    def __init__(
        self,
        *,
        store: ClientStore | None = None,
        faults: Faults | None = None,
        limiter: WriteLimiter | None = None,
        pace_reads: bool = True,
        unlisted: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store or ClientStore()
        self.faults = faults or Faults()
        self.limiter = limiter or WriteLimiter()
        self.pace_reads = pace_reads
        self.unlisted = unlisted  # paper trading symbols left out of the scrip master (not at Angel)
        self._lock = threading.Lock()
        self._accepted = AcceptedWrites(self.faults)
        self._last_read: dict[tuple[str, str], float] = {}
        self._login_refused: set[str] = set()
        self.hits: Counter[Hit] = Counter()

    # --- dispatch ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        route_name, client_code = f"{request.method} ?", ""
        try:
            route = resolve(request.method, request.path)
            if route is None:
                response = Response.json_body({"message": "Not found"}, 404)
            else:
                route_name = route.path
                session = (
                    self.store.authenticate(request.header("authorization"), request.header("x-privatekey"))
                    if route.auth
                    else None
                )
                client_code = session.client_code if session else ""
                if not route.admin:
                    delay = self.faults.latency_s(client_code or None)
                    if delay > 0:
                        time.sleep(delay)
                response = route.handler(Call(self, request, session))
        except AngelAuthError as exc:
            if exc.code.startswith("AG"):
                response = Response.json_body(
                    {"success": False, "message": exc.message, "errorCode": exc.code, "data": ""}
                )
            else:
                response = refusal(exc.code, exc.message)
        except RateLimitBreach:
            response = Response(status=403, body=RATE_LIMIT_TEXT, content_type="text/plain")
        except AngelError as exc:
            response = refusal(exc.code, exc.message, exc.http_status)
        except FaultSpecError as exc:
            response = Response.json_body({"message": str(exc)}, 400)
        except ServerFault as exc:
            response = Response(status=exc.status, body=b"<html>Bad Gateway</html>", content_type="text/html")
        except BrokerError as exc:
            response = _broker_error(exc)
        except Exception:
            logger.exception("angel_sim: %s %s failed", request.method, request.path)
            response = refusal("AB2001", "Internal Error, Please try after sometime")
        with self._lock:
            self.hits[Hit(client_code, route_name, response.status)] += 1
        return response

    def hit_count(
        self, *, client_code: str | None = None, route: str | None = None, status: int | None = None
    ) -> int:
        """Requests answered; `route` is matched as a suffix of the path (`placeOrder`)."""
        with self._lock:
            return sum(
                n
                for hit, n in self.hits.items()
                if (client_code is None or hit.client_code == client_code)
                and (route is None or hit.route.endswith(route))
                and (status is None or hit.status == status)
            )

    # --- limits, faults ----------------------------------------------------------------------

    def pace(self, client_code: str, read: str) -> None:
        """Angel's one-a-second reads: a second call within the second is refused (403)."""
        if not self.pace_reads:
            return
        now = time.monotonic()
        with self._lock:
            last = self._last_read.get((client_code, read))
            if last is not None and now - last < READ_GAPS[read]:
                raise RateLimitBreach()
            self._last_read[(client_code, read)] = now

    def order_write_gate(self, client_code: str) -> None:
        gate = self.faults.on_order_write(client_code)
        if gate.expire_token:
            self.store.expire(client_code=client_code)
            raise AngelAuthError("AG8002", "Token Expired")
        if gate.rate_limited or not self.limiter.allow(client_code):
            raise RateLimitBreach()

    def after_accept(self, client_code: str, *, order_id: str, placed: bool) -> None:
        self._accepted.after_accept(client_code, order_id=order_id, placed=placed)

    def visible(self, order_id: str) -> bool:
        return self._accepted.visible(order_id)

    def faults_login_refused(self, client_code: str) -> bool:
        with self._lock:
            return client_code.strip().upper() in self._login_refused

    def set_faults(self, *, client_code: str | None = None, **spec: Any) -> dict[str, Any]:
        """lab.kite_sim's fault spec, plus `login_refused: true|false` (per client code)."""
        refused = spec.pop("login_refused", None)
        if refused is not None and client_code:
            with self._lock:
                (self._login_refused.add if refused else self._login_refused.discard)(client_code.upper())
        state = self.faults.set(user_id=client_code, **spec) if spec else {}
        if spec.get("expire_token") == "now":
            self.store.expire(client_code=client_code)
        return state

    def clear_faults(self) -> None:
        self.faults.clear()
        with self._lock:
            self._login_refused.clear()

    def configure(self, config: dict[str, Any]) -> None:
        """Load `{"clients": [{client_code, pin?, totp_secret?, api_key?}], "faults": [{client_code?,
        ...spec}]}` (the command's --config file)."""
        unknown = set(config) - {"clients", "faults"}
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        for entry in config.get("clients", []):
            self.store.register(
                client_code=str(entry["client_code"]),
                pin=str(entry.get("pin", "")),
                totp_secret=str(entry.get("totp_secret", "")),
                api_key=str(entry.get("api_key", "")),
            )
        for spec in config.get("faults", []):
            spec = dict(spec)
            client_code = spec.pop("client_code", None)
            self.set_faults(client_code=client_code, **spec)

    def instruments_by_token(self) -> dict[tuple[str, str], PaperInstrument]:
        return {(row.exchange, str(row.instrument_token)): row for row in sim_instrument_list()}


# --- the HTTP server (lab.sim_http) ----------------------------------------------------------


class RunningSim(RunningHttp[AngelSim]):
    """The Angel simulator served on 127.0.0.1: `root` for the adapter, `stop()`."""


def make_server(sim: AngelSim, *, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    return sim_http.make_server(sim, host=host, port=port)


def start(*, sim: AngelSim | None = None, host: str = "127.0.0.1", port: int = 0) -> RunningSim:
    """Serve `sim` (a new one by default) on host:port (0 = any free port) in a daemon thread."""
    sim = sim or AngelSim()
    server = make_server(sim, host=host, port=port)
    return RunningSim(sim=sim, server=server, thread=sim_http.serve(server, name="angel-sim"))


__all__ = ["WRITES", "AngelSim", "RunningSim", "WriteLimiter", "make_server", "start"]
