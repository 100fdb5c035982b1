"""The soak's fault schedule: which simulator fault is switched on for whom, and when it goes off.

Drawn from the soak's seeded generator at fixed points (one draw decides whether a step gets a
fault at all), so one seed gives one schedule. Whether a counted fault is used up depends on the
engine sending an order to that child in time; the schedule itself does not.

Kinds (brokers/kite_sim/faults.py has the switches):
- `latency`: one child's answers slowed by a few milliseconds (jittered) for a few steps;
- `timeout_after_place`: one child's next order is placed, then answered after the client's
  timeout (the engine sees an unknown outcome);
- `error_after_place`: one child's next order(s) placed, then answered 5xx;
- `rate_limit`: one child's next order writes get 429 (nothing placed);
- `rate_limit_burst`: the next order writes of whichever children write next get 429;
- `late_book`: one child's new orders stay out of its order book for a fraction of a second, for
  a few steps (the engine must not take "not in the book" for "not placed" too early);
- `expire_token`: one child's session dies now, or at its next order write (the engine marks it
  NEEDS_LOGIN; the soak's staff log it in again);
- `slow_write`: one child's answers come after the client's timeout, for one step: its orders are
  placed *after* the engine gave up on them (the engine must wait for them, not send again);
- `crash`: the orchestrator dies at a named failpoint (replication.failpoints, `raise`) during
  this step's ticks, if it gets there; a new one takes over (see `run.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from brokers.kite_sim.server import KiteSim
from replication import failpoints

KINDS = {
    "latency": 3,
    "timeout_after_place": 2,
    "error_after_place": 3,
    "rate_limit": 3,
    "rate_limit_burst": 1,
    "late_book": 2,
    "expire_token": 2,
    "slow_write": 1,
    "crash": 2,
}
ERROR_STATUSES = (500, 502, 503, 504)
LATE_BOOK_MAX_S = 0.8  # the longest an order stays out of the book (the quiet period waits it out)


@dataclass(frozen=True, slots=True)
class Fault:
    step: int
    kind: str
    user_id: str | None  # None: the simulator's global scope (whichever child comes next)
    spec: dict[str, Any]
    until: int | None = None  # a lasting fault is switched off before this step's event

    def describe(self) -> str:
        who = self.user_id or "*"
        spec = ",".join(f"{k}={v}" for k, v in sorted(self.spec.items()) if k != "seed")
        return f"{self.step} {self.kind} {who} {spec}" + (f" until {self.until}" if self.until else "")


class Chaos:
    """Switches the simulator's faults on (from the seeded generator) and off again."""

    def __init__(self, sim: KiteSim, children: list[str], *, kite_timeout_s: float) -> None:
        self.sim = sim
        self.children = children
        self.kite_timeout_s = kite_timeout_s
        self.injected: list[Fault] = []
        self._lasting: list[Fault] = []

    def maybe_inject(self, rng: random.Random, *, step: int, rate: float) -> Fault | None:
        """With probability `rate`, draw one fault and switch it on."""
        if rng.random() >= rate:
            return None
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        user: str | None = rng.choice(self.children)
        until: int | None = None
        spec: dict[str, Any]
        if kind == "latency":
            spec = {
                "latency_ms": rng.randint(5, 40),
                "latency_jitter_ms": rng.randint(0, 10),
                "seed": rng.randrange(2**31),
            }
            until = step + rng.randint(1, 5)
        elif kind == "timeout_after_place":
            spec = {"timeout_after_place": {"sleep_s": round(self.kite_timeout_s + 0.3, 2), "count": 1}}
        elif kind == "error_after_place":
            spec = {"error_after_place": {"status": rng.choice(ERROR_STATUSES), "count": rng.randint(1, 2)}}
        elif kind == "rate_limit":
            spec = {"rate_limit": {"count": rng.randint(1, 4)}}
        elif kind == "rate_limit_burst":
            user = None
            spec = {"rate_limit": {"count": rng.randint(3, 8)}}
        elif kind == "late_book":
            spec = {"late_book_s": rng.randint(2, int(LATE_BOOK_MAX_S * 10)) / 10}
            until = step + rng.randint(1, 4)
        elif kind == "expire_token":
            spec = {"expire_token": rng.choice(["now", "on_order_write"])}
        elif kind == "slow_write":
            spec = {"latency_ms": int((self.kite_timeout_s + 0.3) * 1000), "latency_jitter_ms": 0}
            until = step + 1
        else:
            user = None
            point = rng.choice(sorted(failpoints.NAMES))
            nth = rng.randint(1, 3)
            spec = {"point": point, "action": f"raise:{nth}"}
        fault = Fault(step, kind, user, spec, until)
        if kind == "crash":
            failpoints.configure({spec["point"]: spec["action"]})
        else:
            self.sim.set_faults(user_id=user, **spec)
        self.injected.append(fault)
        if until is not None:
            self._lasting.append(fault)
        return fault

    def switch_off_due(self, *, step: int) -> None:
        """Lasting faults whose time is up go off (before this step's event)."""
        due = [f for f in self._lasting if f.until is not None and f.until <= step]
        for fault in due:
            if fault.kind in ("latency", "slow_write"):
                self.sim.set_faults(user_id=fault.user_id, latency_ms=0, latency_jitter_ms=0)
            else:
                self.sim.set_faults(user_id=fault.user_id, late_book_s=0)
            self._lasting.remove(fault)

    def disarm_crash(self) -> None:
        """A crash armed for a step that did not reach its point is not carried over."""
        failpoints.configure({})

    def clear(self) -> None:
        """Every fault off (the quiet period at the end)."""
        self.sim.faults.clear()
        failpoints.configure({})
        self._lasting.clear()
