"""Fault switches and the per-account order-write limiter of the simulator.

Faults are set globally or for one paper user id (`Faults.set(user_id=..., **spec)` in process, or
`POST /_sim/faults` with the same fields as JSON). An account's own setting wins over the global
one for each field; counted faults are used up from the account's scope first, then the global one.

Fields of a spec (all optional; `reset: true` clears the scope first):
- `latency_ms`, `latency_jitter_ms`: sleep before answering any authenticated request (the jitter
  is drawn uniformly from the scope's random generator);
- `timeout_after_place`: `{"sleep_s": 2.0, "count": 1}` — the next `count` order writes are
  carried out, then the answer waits `sleep_s` (longer than the client's timeout);
- `error_after_place`: `{"status": 503, "count": 1}` — the next `count` order writes are carried
  out, then answered with a 5xx error;
- `rate_limit`: `{"count": 5}` — the next `count` order writes get Kite's 429 (nothing placed);
- `expire_token`: `"now"` (every session of the account dies at once) or `"on_order_write"` (they
  die when the next order write arrives, which gets 403);
- `late_book_s`: orders placed while this is set stay out of `GET /orders` (and the order's
  history and trades) for that many seconds;
- `probability` inside a counted fault makes each order write use it up with that chance, drawn
  from the scope's generator (`seed` sets it, so a run is repeatable).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

COUNTED = ("timeout_after_place", "error_after_place", "rate_limit")
ERROR_TYPES = {500: "OrderException", 502: "DataException", 503: "NetworkException", 504: "NetworkException"}
EXPIRE_MODES = ("now", "on_order_write")


class FaultSpecError(ValueError):
    """A fault specification the simulator does not understand."""


@dataclass(slots=True)
class Counted:
    """A fault that hits the next `count` order writes (each with `probability`)."""

    count: int = 0
    probability: float = 1.0
    sleep_s: float = 0.0
    status: int = 503

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "probability": self.probability,
            "sleep_s": self.sleep_s,
            "status": self.status,
        }


@dataclass(slots=True)
class Scope:
    """The faults of one scope (global, or one account)."""

    latency_ms: float | None = None
    latency_jitter_ms: float | None = None
    late_book_s: float | None = None
    expire_on_order_write: bool = False
    expired_users: set[str] = field(default_factory=set)  # global scope: accounts already hit
    counted: dict[str, Counted] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def take(self, name: str) -> Counted | None:
        """Use up one hit of the counted fault `name`, if it is armed and its dice say so."""
        fault = self.counted.get(name)
        if fault is None or fault.count <= 0:
            return None
        if fault.probability < 1.0 and self.rng.random() >= fault.probability:
            return None
        fault.count -= 1
        return fault

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "latency_jitter_ms": self.latency_jitter_ms,
            "late_book_s": self.late_book_s,
            "expire_on_order_write": self.expire_on_order_write,
            **{name: fault.as_dict() for name, fault in self.counted.items() if fault.count > 0},
        }


def _number(spec: Mapping[str, Any], name: str, *, minimum: float = 0.0) -> float:
    value = spec[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultSpecError(f"{name} must be a number, got {value!r}")
    if value < minimum:
        raise FaultSpecError(f"{name} must be at least {minimum}, got {value!r}")
    return float(value)


def _counted(name: str, spec: object) -> Counted:
    if not isinstance(spec, Mapping):
        raise FaultSpecError(f"{name} must be an object like {{'count': 1}}")
    unknown = set(spec) - {"count", "probability", "sleep_s", "status"}
    if unknown:
        raise FaultSpecError(f"{name}: unknown fields {sorted(unknown)}")
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FaultSpecError(f"{name}.count must be a whole number >= 0, got {count!r}")
    fault = Counted(count=count)
    if "probability" in spec:
        fault.probability = _number(spec, "probability")
        if fault.probability > 1:
            raise FaultSpecError(f"{name}.probability must be between 0 and 1")
    if name == "timeout_after_place":
        fault.sleep_s = _number(spec, "sleep_s") if "sleep_s" in spec else 10.0
    if name == "error_after_place":
        status = spec.get("status", 503)
        if status not in ERROR_TYPES:
            raise FaultSpecError(f"{name}.status must be one of {sorted(ERROR_TYPES)}, got {status!r}")
        fault.status = int(status)
    return fault


@dataclass(frozen=True, slots=True)
class WriteGate:
    """What the faults decide when an order write arrives (before anything is placed)."""

    expire_token: bool = False
    rate_limited: bool = False


@dataclass(frozen=True, slots=True)
class AfterAccept:
    """What the faults decide once an order write was carried out."""

    sleep_s: float = 0.0
    error_status: int | None = None

    @property
    def error_type(self) -> str:
        return ERROR_TYPES.get(self.error_status or 500, "GeneralException")


class Faults:
    """Thread-safe fault switches, global and per paper user id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._global = Scope()
        self._accounts: dict[str, Scope] = {}

    def _scope(self, user_id: str | None) -> Scope:
        if user_id is None:
            return self._global
        return self._accounts.setdefault(user_id, Scope())

    def set(self, *, user_id: str | None = None, **spec: Any) -> dict[str, Any]:
        """Merge `spec` (see the module docstring) into a scope; returns the scope's new state.

        `expire_token="now"` is not stored: the caller expires the sessions (see `KiteSim`).
        """
        known = {"latency_ms", "latency_jitter_ms", "late_book_s", "expire_token", "seed", "reset", *COUNTED}
        unknown = set(spec) - known
        if unknown:
            raise FaultSpecError(f"unknown fault fields {sorted(unknown)}")
        if spec.get("expire_token") not in (None, *EXPIRE_MODES):
            raise FaultSpecError(f"expire_token must be one of {EXPIRE_MODES}, got {spec['expire_token']!r}")
        parsed: dict[str, Any] = {}
        for name in ("latency_ms", "latency_jitter_ms", "late_book_s"):
            if spec.get(name) is not None:
                parsed[name] = _number(spec, name)
        counted = {name: _counted(name, spec[name]) for name in COUNTED if name in spec}
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise FaultSpecError(f"seed must be a whole number, got {seed!r}")
        with self._lock:
            if spec.get("reset"):
                if user_id is None:
                    self._global = Scope()
                else:
                    self._accounts[user_id] = Scope()
            scope = self._scope(user_id)
            for name, value in parsed.items():
                setattr(scope, name, value)
            scope.counted.update(counted)
            if spec.get("expire_token") == "on_order_write":
                scope.expire_on_order_write = True
            if seed is not None:
                scope.rng = random.Random(seed)
            return scope.as_dict()

    def clear(self, *, user_id: str | None = None) -> None:
        """Clear one account's faults, or (no user id) every fault."""
        with self._lock:
            if user_id is None:
                self._global = Scope()
                self._accounts.clear()
            else:
                self._accounts.pop(user_id, None)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "global": self._global.as_dict(),
                "accounts": {user: scope.as_dict() for user, scope in sorted(self._accounts.items())},
            }

    # --- decisions (each uses up what it takes) ------------------------------------------------

    def _pair(self, user_id: str) -> tuple[Scope, Scope]:
        return self._accounts.get(user_id) or Scope(), self._global

    def latency_s(self, user_id: str | None) -> float:
        with self._lock:
            own, common = self._pair(user_id) if user_id else (Scope(), self._global)
            scope = own if own.latency_ms is not None else common
            base = scope.latency_ms or 0.0
            jitter_ms = (
                own.latency_jitter_ms if own.latency_jitter_ms is not None else common.latency_jitter_ms
            ) or 0.0
            jitter = scope.rng.uniform(0, jitter_ms) if jitter_ms else 0.0
            return (base + jitter) / 1000

    def late_book_s(self, user_id: str) -> float:
        with self._lock:
            own, common = self._pair(user_id)
            value = own.late_book_s if own.late_book_s is not None else common.late_book_s
            return value or 0.0

    def on_order_write(self, user_id: str) -> WriteGate:
        with self._lock:
            own = self._accounts.get(user_id)
            if own is not None and own.expire_on_order_write:
                own.expire_on_order_write = False  # fires once
                return WriteGate(expire_token=True)
            common = self._global
            if common.expire_on_order_write and user_id not in common.expired_users:
                common.expired_users.add(user_id)  # fires once per account
                return WriteGate(expire_token=True)
            hit = self._take(user_id, "rate_limit")
            return WriteGate(rate_limited=hit is not None)

    def after_accept(self, user_id: str) -> AfterAccept:
        with self._lock:
            hang = self._take(user_id, "timeout_after_place")
            if hang is not None:
                return AfterAccept(sleep_s=hang.sleep_s)
            error = self._take(user_id, "error_after_place")
            if error is not None:
                return AfterAccept(error_status=error.status)
            return AfterAccept()

    def _take(self, user_id: str, name: str) -> Counted | None:
        own = self._accounts.get(user_id)
        return (own.take(name) if own is not None else None) or self._global.take(name)


class OrderRateLimiter:
    """Kite's order-write limits per account: sliding windows of one second (and one minute).

    Only writes that were let through count; a 429 does not use up the window.
    """

    def __init__(
        self,
        *,
        per_second: int = 10,
        per_minute: int | None = 400,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._writes: dict[str, deque[float]] = {}

    def allow(self, user_id: str) -> bool:
        now = self._clock()
        with self._lock:
            window = self._writes.setdefault(user_id, deque())
            while window and window[0] <= now - 60.0:
                window.popleft()
            last_second = sum(1 for moment in window if moment > now - 1.0)
            if last_second >= self.per_second:
                return False
            if self.per_minute is not None and len(window) >= self.per_minute:
                return False
            window.append(now)
            return True
