"""`manage.py master_stream`: listen to the master's order updates and wake the orchestrator.

The broker's order-update socket pushes every order update of the master (from web, mobile or the
API), seconds before a poll would see it; each update wakes the orchestrator loop (another
process, same host) through `replication.wakeup.wake_remote`. Polling stays the source of truth:
this only shortens the wait. Run it as its own process.

Kite: the WebSocket (`KITE_WS_ROOT`; one of the three connections per api key). Dhan: the
order-update socket (`DHAN_WS_ROOT`; it covers orders from every platform). Alice Blue: the order
feed (`ALICE_WS_URL`). Angel One and paper masters are polled only.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, Broker
from accounts.selectors import account_get_master
from brokers.alice.client import AliceBroker
from brokers.alice.stream import DEFAULT_WS_URL as ALICE_DEFAULT_WS_URL
from brokers.alice.stream import OrderUpdateStream as AliceOrderStream
from brokers.capabilities import KNOWN, capabilities_for
from brokers.dhan.stream import DhanOrderStream
from brokers.errors import BrokerError
from brokers.kite.stream import DEFAULT_WS_ROOT, OrderUpdateStream, stop_reactor
from brokers.registry import build_client
from brokers.types import Order
from replication.wakeup import wake_remote

logger = logging.getLogger("replication.master_stream")

StreamFactory = Callable[..., OrderUpdateStream]


class OrderStream(Protocol):
    """What the supervisor needs of a broker's order stream (Kite's, Dhan's, Alice Blue's)."""

    gave_up: threading.Event

    def start(self) -> None: ...

    def stop(self) -> None: ...


# The brokers whose order updates can be streamed, and what each needs besides the token.
STREAMED = (Broker.KITE, Broker.DHAN, Broker.ALICE)
NEEDS_API_KEY = (Broker.KITE,)


def on_master_order(order: Order) -> None:
    """One order update of the master: ask the orchestrator to poll now, handing it the order (its
    tick asks the margin calculator about it together with the master's funds and book)."""
    logger.info("master order %s is %s: waking the orchestrator", order.order_id, order.status.value)
    wake_remote(order)


@dataclass(frozen=True, slots=True)
class MasterSession:
    account: Account
    api_key: str
    access_token: str

    def __repr__(self) -> str:  # never show credentials
        return f"MasterSession(account={self.account.pk})"


def master_session() -> tuple[MasterSession | None, str]:
    """The enabled master's live session on a broker with an order stream, or None and why."""
    master = account_get_master()
    if master is None:
        return None, "no master account is linked"
    if master.broker not in STREAMED:
        where = capabilities_for(master.broker).name if master.broker in KNOWN else master.broker
        return None, f"the master {master.broker_user_id} is on {where}: no order stream, polled only"
    if master.token_expires_at is not None and master.token_expires_at <= timezone.now():
        return None, f"the master {master.broker_user_id}'s session expired: waiting for its daily login"
    try:
        api_key, token = master.secret("api_key"), master.secret("access_token")
    except CredentialDecryptError:
        return None, f"the master {master.broker_user_id}'s credentials cannot be decrypted"
    if not token or (master.broker in NEEDS_API_KEY and not api_key):
        return None, f"the master {master.broker_user_id} has no access token: waiting for its daily login"
    return MasterSession(master, api_key, token), ""


class MasterStreamSupervisor:
    """Keeps one order stream open on the master's current session.

    Each `step()` compares the master's session with the stream's: a new login (new token) or a
    new master replaces the stream, an expired session closes it, a stream that gave up
    reconnecting is replaced.
    """

    def __init__(
        self, *, write: Callable[[str], Any], stream_factory: StreamFactory = OrderUpdateStream
    ) -> None:
        self.write = write
        self.stream_factory = stream_factory
        self.stream: OrderStream | None = None
        self.started = 0
        self._token = ""
        self._account_pk: int | None = None
        self._waiting = ""
        self._refused = ""

    def step(self) -> None:
        session, why = master_session()
        token = session.access_token if session else ""
        pk = session.account.pk if session else None
        if self.stream is not None and (token != self._token or pk != self._account_pk):
            self._close("the master's session changed")
        elif self.stream is not None and self.stream.gave_up.is_set():
            self._close("the stream gave up reconnecting")
        if session is None:
            if why != self._waiting:
                self.write(why)
                self._waiting = why
            return
        self._waiting = ""
        if self.stream is None:
            self._open(session)

    def _build(self, session: MasterSession) -> tuple[OrderStream, str]:
        """The stream for the master's broker (not started) and where it connects."""
        account = session.account
        if account.broker == Broker.DHAN:
            root = str(settings.DHAN_WS_ROOT)
            stream: OrderStream = DhanOrderStream(
                client_id=account.broker_user_id,
                access_token=session.access_token,
                on_order=on_master_order,
                root=root,
            )
            return stream, root
        if account.broker == Broker.ALICE:
            url = str(settings.ALICE_WS_URL or ALICE_DEFAULT_WS_URL)
            client = build_client(account.broker_credentials())
            if not isinstance(client, AliceBroker):
                raise BrokerError("the Alice Blue master's client has no order feed", code="no_stream")
            return AliceOrderStream(broker=client, on_order=on_master_order, ws_url=url), url
        root = str(settings.KITE_WS_ROOT or DEFAULT_WS_ROOT)
        stream = self.stream_factory(
            api_key=session.api_key,
            access_token=session.access_token,
            on_order=on_master_order,
            root=root,
            user_id=account.broker_user_id,
        )
        return stream, root

    def _open(self, session: MasterSession) -> None:
        try:
            stream, root = self._build(session)
            stream.start()
        except BrokerError as exc:  # e.g. simulator credentials pointed at a real root: say so, once
            why = f"order stream not opened: {exc.message}"
            if why != self._refused:
                self.write(why)
                self._refused = why
            return
        self._refused = ""
        self.stream = stream
        self._token = session.access_token
        self._account_pk = session.account.pk
        self.started += 1
        self.write(f"order stream for master {session.account.broker_user_id} opened ({root})")

    def _close(self, why: str) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.write(f"order stream closed: {why}")
        self.stream = None
        self._token = ""
        self._account_pk = None

    def close(self) -> None:
        self._close("shutting down")


def run_master_stream(
    *,
    stop: threading.Event,
    check_every: float,
    write: Callable[[str], Any],
    stream_factory: StreamFactory = OrderUpdateStream,
) -> int:
    """Supervise the master's order stream until `stop` is set. Returns how many streams were opened."""
    supervisor = MasterStreamSupervisor(write=write, stream_factory=stream_factory)
    try:
        while not stop.is_set():
            close_old_connections()  # a long-lived process: drop connections the server may have closed
            supervisor.step()
            stop.wait(check_every)
    finally:
        supervisor.close()
    return supervisor.started


class Command(BaseCommand):
    help = (
        "Listen to the master's order updates (Kite: KITE_WS_ROOT; Dhan: DHAN_WS_ROOT; Alice Blue: "
        "ALICE_WS_URL) and wake the orchestrator on each one. Follows the master's daily login by "
        "itself. SIGTERM or Ctrl-C stops it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check-every", type=float, default=30.0, help="seconds between checks of the master's session"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check_every"] <= 0:
            raise CommandError("--check-every must be a positive number of seconds")
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("signal %s: closing the order stream", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            run_master_stream(stop=stop, check_every=options["check_every"], write=self.stdout.write)
        finally:
            stop_reactor()
