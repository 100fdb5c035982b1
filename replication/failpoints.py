"""Named failpoints for crash tests: the engine dies (or raises) at a chosen point of a tick.

Switched by the environment, read once on first use::

    PMS_FAILPOINTS="after_intent_commit=kill,after_broker_call=kill:3"

Actions: `kill` sends SIGKILL to this process (subprocess crash tests), `raise` raises
`FailpointTriggered` (in-process tests; a BaseException, so no `except Exception` swallows it).
An optional `:N` triggers on the Nth hit of that point only; without it, on every hit.

Points (where `failpoint(name)` is called):
- `after_intent_commit`: a group's intents are committed, nothing is dispatched yet;
- `after_first_wave_commit`: a large opening group's first wave of intents is committed, the rest
  of the group is not sized yet (and nothing is dispatched);
- `after_broker_call`: a child's `place_order` returned, its outcome is not written yet;
- `before_ack_commit`: outcomes are computed, the transaction that writes them has not begun;
- `mid_reconciliation`: a child's order book was read and matched by tag, nothing written yet.

With nothing configured `failpoint()` is one dictionary lookup. Tests switch points with
`configure({...})` and clear them with `reset()` (which reads the environment again).
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ENV_VAR = "PMS_FAILPOINTS"
NAMES = frozenset(
    {
        "after_intent_commit",
        "after_first_wave_commit",
        "after_broker_call",
        "before_ack_commit",
        "mid_reconciliation",
    }
)


class FailpointTriggered(BaseException):
    """Raised by a `raise` failpoint: the in-process stand-in for the process dying there."""

    def __init__(self, name: str, hit: int) -> None:
        super().__init__(f"failpoint {name} triggered on hit {hit}")
        self.name = name
        self.hit = hit


class Action(enum.StrEnum):
    KILL = "kill"
    RAISE = "raise"


@dataclass(slots=True)
class _Point:
    action: Action
    nth: int | None  # trigger on this hit only; None: on every hit
    hits: int = 0


_lock = threading.Lock()
_points: dict[str, _Point] | None = None  # None: the environment has not been read yet
_hits: dict[str, int] = {}  # hits of configured points since the last configure/reset


def parse(spec: str) -> dict[str, tuple[Action, int | None]]:
    """`"a=kill,b=raise:2"` -> {"a": (KILL, None), "b": (RAISE, 2)}; unknown names are an error."""
    out: dict[str, tuple[Action, int | None]] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("=")
        name = name.strip()
        if not sep or name not in NAMES:
            raise ValueError(
                f"{ENV_VAR}: {item!r} is not <point>=<action>[:N] with a known point {sorted(NAMES)}"
            )
        action_text, _, nth_text = rest.strip().partition(":")
        try:
            action = Action(action_text.strip())
            nth = int(nth_text) if nth_text.strip() else None
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR}: {item!r}: action is kill or raise, N a positive integer") from exc
        if nth is not None and nth < 1:
            raise ValueError(f"{ENV_VAR}: {item!r}: N counts hits from 1")
        out[name] = (action, nth)
    return out


def configure(points: Mapping[str, str]) -> None:
    """Arm points for this process, replacing any others: `configure({"after_broker_call": "raise:2"})`."""
    global _points
    parsed = parse(",".join(f"{name}={action}" for name, action in points.items()))
    with _lock:
        _points = {name: _Point(action, nth) for name, (action, nth) in parsed.items()}
        _hits.clear()


def reset() -> None:
    """Forget configured points and hit counts; the next `failpoint()` reads the environment again."""
    global _points
    with _lock:
        _points = None
        _hits.clear()


def hits(name: str) -> int:
    """How often a configured point was reached since the last configure/reset (tests: was it reached?)."""
    with _lock:
        return _hits.get(name, 0)


@contextmanager
def active(points: Mapping[str, str]) -> Iterator[None]:
    """`with failpoints.active({...}):` configure for the block, reset after it."""
    configure(points)
    try:
        yield
    finally:
        reset()


def _load() -> dict[str, _Point]:
    global _points
    with _lock:
        if _points is None:
            spec = os.environ.get(ENV_VAR, "")
            _points = {name: _Point(action, nth) for name, (action, nth) in parse(spec).items()}
            if _points:
                logger.warning("failpoints armed: %s", spec)
        return _points


def failpoint(name: str) -> None:
    """Crash here if this point is armed (and this is the hit it waits for)."""
    point = (_points if _points is not None else _load()).get(name)
    if point is None:
        return
    with _lock:
        point.hits += 1
        hit = point.hits
        _hits[name] = hit
    if point.nth is not None and hit != point.nth:
        return
    if point.action == Action.KILL:
        logger.warning("failpoint %s: SIGKILL on hit %d", name, hit)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    raise FailpointTriggered(name, hit)
