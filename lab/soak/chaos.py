"""The soak's fault schedule: which simulator fault is switched on for whom, and when it goes off.

Drawn from the soak's seeded generator at fixed points (one draw decides whether a step gets a
fault at all), so one seed gives one schedule. Whether a counted fault is used up depends on the
engine sending an order to that child in time; the schedule itself does not.

Kinds (lab/kite_sim/faults.py has the switches):
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

With the money faults (issue 11, `money=True`), staff and the exchange's RMS join in, each for a
few steps:
- `reject_after_accept`: one child's margin is squeezed (its paper cash set to zero): the place
  call answers 200 with an order id and the order shows REJECTED in its book (an entry; an exit
  needs no margin and still goes);
- `child_halt`: staff halt one child (nothing may reach it), then resume it;
- `engine_halt`: the engine is halted (nothing is sent), then resumed;
- `dry_run`: dry-run on for the engine or one child, then off;
- `disable`: staff disable one child (forced, with a reason, where the service asks for it),
  then enable it again.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from accounts.models import Account, AccountStatus
from accounts.services import account_set_status
from brokers.paper.models import PaperAccount
from brokers.paper.services import paper_account_set_cash
from lab.kite_sim.server import KiteSim
from replication import failpoints
from replication.controls import engine_control_update

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
MONEY_KINDS = {
    "reject_after_accept": 3,
    "child_halt": 2,
    "engine_halt": 1,
    "dry_run": 2,
    "disable": 1,
}
# Faults during which a child may rightly keep an exit owed (nothing can reach it, or nothing is sent).
GATING = frozenset({"child_halt", "engine_halt", "dry_run", "disable"})
STAFF = "soak-staff"
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

    def __init__(
        self, sim: KiteSim, children: list[str], *, kite_timeout_s: float, money: bool = False
    ) -> None:
        self.sim = sim
        self.children = children
        self.kite_timeout_s = kite_timeout_s
        self.kinds = {**KINDS, **MONEY_KINDS} if money else dict(KINDS)
        self.injected: list[Fault] = []
        self._lasting: list[Fault] = []
        self._cash: dict[str, Decimal] = {}  # squeezed children's cash, given back when it ends

    @property
    def gating(self) -> bool:
        """A lasting fault that rightly holds exits back is on (halt, dry-run, disable)."""
        return any(f.kind in GATING for f in self._lasting)

    def maybe_inject(self, rng: random.Random, *, step: int, rate: float) -> Fault | None:
        """With probability `rate`, draw one fault and switch it on."""
        if rng.random() >= rate:
            return None
        kind = rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
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
        elif kind in MONEY_KINDS:
            return self._money(rng, kind, step=step, user=user)
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

    def _money(self, rng: random.Random, kind: str, *, step: int, user: str | None) -> Fault | None:
        """Switch a money fault on (staff, engine or RMS), for 1-4 steps; None if it cannot apply now
        (that child is already under one)."""
        until = step + rng.randint(1, 4)
        spec: dict[str, Any] = {}
        if kind == "dry_run" and rng.random() < 0.4:
            user = None  # the engine's dry-run
        elif kind == "engine_halt":
            user = None
        if user is not None and any(f.user_id == user and f.kind in MONEY_KINDS for f in self._lasting):
            return None
        if user is None and any(f.kind == kind and f.user_id is None for f in self._lasting):
            return None
        if kind == "reject_after_accept":
            assert user is not None
            self._cash[user] = PaperAccount.objects.values_list("cash", flat=True).get(user_id=user)
            paper_account_set_cash(user_id=user, cash=Decimal(0))
        elif kind == "child_halt":
            _set_status(user, AccountStatus.HALTED)
        elif kind == "engine_halt":
            engine_control_update(actor=STAFF, halted=True)
        elif kind == "dry_run":
            if user is None:
                engine_control_update(actor=STAFF, dry_run=True)
            else:
                Account.objects.filter(broker_user_id=user).update(dry_run=True)
        elif kind == "disable":
            _set_status(user, AccountStatus.DISABLED)
        fault = Fault(step, kind, user, spec, until)
        self.injected.append(fault)
        self._lasting.append(fault)
        return fault

    def _money_off(self, fault: Fault) -> None:
        user = fault.user_id
        if fault.kind == "reject_after_accept" and user is not None:
            paper_account_set_cash(user_id=user, cash=self._cash.pop(user))
        elif fault.kind in ("child_halt", "disable"):
            _set_status(user, AccountStatus.ACTIVE, only_from=fault.kind)
        elif fault.kind == "engine_halt":
            engine_control_update(actor=STAFF, halted=False)
        elif fault.kind == "dry_run":
            if user is None:
                engine_control_update(actor=STAFF, dry_run=False)
            else:
                Account.objects.filter(broker_user_id=user).update(dry_run=False)

    def switch_off_due(self, *, step: int) -> None:
        """Lasting faults whose time is up go off (before this step's event)."""
        due = [f for f in self._lasting if f.until is not None and f.until <= step]
        for fault in due:
            if fault.kind in MONEY_KINDS:
                self._money_off(fault)
            elif fault.kind in ("latency", "slow_write"):
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
        for fault in self._lasting:
            if fault.kind in MONEY_KINDS:
                self._money_off(fault)
        self._lasting.clear()


def _set_status(user: str | None, status: str, *, only_from: str = "") -> None:
    """Staff change a child's status (a disable forced with a reason where the service asks for it).
    Switching a fault off moves only a child still in the fault's status back to ACTIVE."""
    account = Account.objects.get(broker_user_id=user)
    if only_from == "child_halt" and account.status != AccountStatus.HALTED:
        return
    if only_from == "disable" and account.status != AccountStatus.DISABLED:
        return
    extra: dict[str, Any] = {}
    if status == AccountStatus.DISABLED and "force" in inspect.signature(account_set_status).parameters:
        extra["force"] = True
    account_set_status(account=account, status=status, actor=STAFF, reason="soak", **extra)
