"""Waking the orchestrator early (e.g. from a master order-update stream). Polling stays the truth.

Two channels: `wake()` for the loop in this process (a threading.Event), and `wake_remote()` for a
loop in another process on the same host: it stamps the modification time of a small file
(settings.WAKE_FILE, default BASE_DIR/.engine-wake), which `wait_for_wakeup` checks every 50 ms.

A wake may carry the streamed order (a *hint*): the next tick asks the margin calculator about it
in the same round trip as the master's funds and book, instead of one round trip later. A hint is
only a guess: the tick uses its answers only when the orders it finds in the book ask the
calculator exactly the same; otherwise it asks again. Nothing is decided from a hint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from brokers.types import Order, OrderStatus, OrderType, Product, Side, Validity

logger = logging.getLogger(__name__)

STEP_S = 0.05
HINTS_KEPT = 16  # the latest order updates a wake carries (and this process keeps for its next tick)
HINT_MAX_AGE_S = 5.0  # an older hint is dropped: the tick it was meant for has long run

_wake = threading.Event()
_seen_lock = threading.Lock()
_seen: dict[Path, int | None] = {}  # wake file -> the mtime (ns) this process has acted on
_hints_lock = threading.Lock()
_hints: deque[tuple[float, Order]] = deque(maxlen=HINTS_KEPT)  # (monotonic when received, order)
_sent_lock = threading.Lock()
_sent: deque[Order] = deque(maxlen=HINTS_KEPT)  # what this process last wrote to the wake file


def wake_file() -> Path:
    """The file another process touches to wake this one."""
    configured = settings.WAKE_FILE
    return Path(configured) if configured else Path(settings.BASE_DIR) / ".engine-wake"


def wake(order: Order | None = None) -> None:
    """Ask the loop in this process to run its next tick now (`order`: the update that woke it)."""
    if order is not None:
        _keep_hints([order])
    _wake.set()


def wake_remote(order: Order | None = None) -> bool:
    """Ask the orchestrator loop in another process (same host) to run its next tick now.

    With `order`, the file carries it (with the latest updates this process sent before it, up to
    `HINTS_KEPT`) as JSON, replaced atomically, so a reader never sees half a file.
    Returns False (and logs) when the wake file cannot be written; the loop then simply wakes at
    its next poll.
    """
    path = wake_file()
    stamp = time.time_ns()
    try:
        if order is None:
            path.touch(exist_ok=True)
        else:
            with _sent_lock:
                _sent.append(order)
                body = json.dumps([order_to_json(o) for o in _sent])
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_text(body)
            os.replace(partial, path)
        os.utime(path, ns=(stamp, stamp))  # explicit stamp: two wakes within a clock tick still differ
    except OSError as exc:
        logger.warning("cannot touch the wake file %s: %s", path, exc)
        return False
    return True


def take_hints() -> tuple[Order, ...]:
    """The order updates that woke this process since the last call (the latest of each order,
    none older than `HINT_MAX_AGE_S`), handed to the tick about to start."""
    horizon = time.monotonic() - HINT_MAX_AGE_S
    with _hints_lock:
        latest = {order.order_id: order for at, order in _hints if at >= horizon}
        _hints.clear()
    return tuple(latest.values())


def _keep_hints(orders: Iterable[Order]) -> None:
    now = time.monotonic()
    with _hints_lock:
        _hints.extend((now, order) for order in orders)


def order_to_json(order: Order) -> dict[str, Any]:
    """An order as the wake file carries it (every field, as text where JSON has no type for it)."""
    out: dict[str, Any] = {}
    for name in Order.__dataclass_fields__:
        value = getattr(order, name)
        if isinstance(value, Side | OrderType | Product | OrderStatus | Validity):
            value = value.value
        elif isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[name] = value
    return out


def order_from_json(data: dict[str, Any]) -> Order:
    """The order `order_to_json` wrote. Raises (KeyError, TypeError, ValueError) on anything else."""
    values = dict(data)
    for name, kind in (
        ("side", Side),
        ("order_type", OrderType),
        ("product", Product),
        ("status", OrderStatus),
        ("validity", Validity),
    ):
        values[name] = kind(values[name])
    for name in ("price", "trigger_price", "average_price"):
        values[name] = Decimal(values[name])
    for name in ("placed_at", "updated_at"):
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return Order(**values)


def _read_hints(path: Path) -> None:
    """The orders a remote wake carried (none from an empty or unreadable file: a plain wake)."""
    try:
        body = path.read_text()
        orders = [order_from_json(item) for item in json.loads(body)] if body.strip() else []
    except (OSError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        logger.warning("wake file %s carries no readable order updates: %s", path, exc)
        return
    _keep_hints(orders)


def _remote_woken() -> bool:
    """True once per new stamp of the wake file. The first look at a file only records its stamp
    (a file left by an earlier run wakes nobody)."""
    path = wake_file()
    try:
        stamp: int | None = os.stat(path).st_mtime_ns
    except OSError:  # no file yet (nobody woke us), or unreadable: no remote wake
        stamp = None
    with _seen_lock:
        first_look = path not in _seen
        previous = _seen.get(path)
        _seen[path] = stamp
    woken = not first_look and stamp is not None and stamp != previous
    if woken:
        _read_hints(path)
    return woken


def wait_for_wakeup(*, stop: threading.Event, timeout: float) -> None:
    """Sleep up to `timeout` seconds, returning early on `wake()`, on `wake_remote()` from another
    process, or when `stop` is set.

    A remote wake that arrived while the caller was busy (between two waits) ends the next wait
    at once.
    """
    step = min(STEP_S, timeout)
    waited = 0.0
    while waited < timeout and not stop.is_set():
        if _remote_woken():
            return
        if _wake.wait(step):
            _wake.clear()
            return
        waited += step
