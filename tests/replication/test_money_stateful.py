"""Issue 11, proof (section 3, first bullet): a model-based stateful test of the engine's money rules.

The real engine runs on the paper exchange (the DESIGN §3.6 desk, with per-child caps). Hypothesis
writes random master scripts: MARKET entries and partial exits, an order crossing zero, a stop-loss
plus a target resting together (one fills on a price move, the master cancels the other; the master
trails the stop-loss), a resting LIMIT entry modified (price, quantity, LIMIT -> MARKET) or
cancelled, two-leg hedges (BUY call and SELL future in one tick). Interleaved with faults: a
rejection after accept (the place call returns an id, the order then shows REJECTED in the child's
book), token expiry then re-login, a 429, a timeout after accept, a child halted and resumed, the
engine halted, dry-run (engine and child) on and off, a child disabled (forced, with a reason) and
enabled again, a crash at a failpoint and a restart. Ticks go through `Orchestrator.run_tick()`.

After every tick, observed at the paper exchange (the engine's OrderMapping rows are read only to
map a child order's tag to its master event), the DESIGN §3.7 invariants:

- no tag has two orders at the broker (no child order twice);
- no child holds (or has resting) a hedge's sell leg unless the buy leg of that group is in its
  book and not rejected;
- no child order (new or modified) above the child's caps: max lots per order, max quantity, max
  order value (MARKET priced at the LTP read for the tick, SL-M at its trigger);
- nothing reaches the broker (place, modify, cancel) for a halted or dry-run child, or while the
  engine is halted or in dry-run;
- when the price moves (faults clear for two ticks): no child's resting copies took it past zero,
  onto a side it has no entitlement on;
- once faults are clear: within SETTLE ticks, a child holds no more (in absolute lots) than the
  exit rules entitle it to (`E` of §3.7, modelled here from the master's positions and the entry
  orders at the broker: an upper bound, see `EntitlementModel`), and a child is flat in an
  instrument the master has been flat in for SETTLE ticks.

At the end of every example (teardown): all faults off, SETTLE ticks; the entitlement bound holds;
the master closes everything; SETTLE ticks; every child is flat.

Each example starts from the same desk (built once; every example runs in a savepoint its teardown
rolls back). `MONEY_INVARIANTS=dup,hedge,caps,gate,bound,flat,zero` (environment) checks only the named
invariants, to get the shortest example of each one separately. The longer variant is marked slow.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Account, AccountStatus
from accounts.services.lifecycle import account_set_status
from brokers.errors import BrokerError
from brokers.paper.models import LIVE_STATUSES, OrderStatus, PaperInstrument, PaperOrder, PaperPosition
from brokers.paper.services import paper_order_cancel, paper_order_modify, paper_price_set
from lab.soak import SoakConfig, run_soak
from replication import failpoints
from replication.controls import engine_control_get, engine_control_update
from replication.failpoints import FailpointTriggered
from replication.models import (
    Allocation,
    AllocationKind,
    MappingStatus,
    MasterOrder,
    OrchestratorLease,
    OrderMapping,
)
from replication.orchestrator import Orchestrator
from tests.engine_helpers import CALL, CHILDREN, FUT, Desk, build_desk
from tests.faulty_broker import Faults

LOT = 75
NAMES = sorted(CHILDREN)
SYMBOLS = (FUT, CALL)
# The master's position limits in lots (₹10,00,000 at ₹1,50,000 a future lot): the future either
# way, the call long only.
LIMITS = {FUT: (-3, 3), CALL: (0, 4)}
# NIFTY future price levels; the call follows at half the move. A move of one level crosses the
# master's resting orders (stop-loss, target, LIMIT entry), all one level away.
LEVELS = (19700, 19850, 20000, 20150, 20300)
STEP = 150
# Caps that bite on the desk (C2 gets 4 future lots for the master's 2; C5 gets 1-2).
CAPS: dict[str, dict[str, Any]] = {
    "C1": {"max_quantity": 75},
    "C2": {"max_order_value": Decimal("4000000")},  # 2 future lots at 20,000 (₹15,00,000 a lot)
    "C5": {"max_lots_per_order": 1},
}
SETTLE = 6  # ticks after faults clear within which every child converges
ONE_SHOT = ("reject_after_accept", "rate_limited_once", "place_then_unknown", "unknown_not_placed")
STAFF = "money-stateful"
CHECKS = frozenset(
    (os.environ.get("MONEY_INVARIANTS") or "dup,hedge,caps,gate,bound,flat,zero").replace(" ", "").split(",")
)


def _step(fn: Callable[..., None]) -> Callable[..., None]:
    """Mark the machine busy while a rule runs: if it raises, teardown only cleans up."""

    @functools.wraps(fn)
    def wrapper(self: MoneyMachine, *args: Any, **kwargs: Any) -> None:
        self.busy = True
        fn(self, *args, **kwargs)
        self.busy = False

    return wrapper


def _lots_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@dataclass(frozen=True, slots=True)
class BookRow:
    """What an engine write can change in a child's order at the exchange."""

    user: str
    symbol: str
    side: str
    order_type: str
    quantity: int
    price: Decimal
    trigger: Decimal
    status: str
    modifications: int
    tag: str
    filled: int


def _child_book() -> dict[str, BookRow]:
    return {
        o.order_id: BookRow(
            o.account.user_id,
            o.tradingsymbol,
            o.side,
            o.order_type,
            o.quantity,
            o.price,
            o.trigger_price,
            o.status,
            o.modifications,
            o.tag,
            o.filled_quantity,
        )
        for o in PaperOrder.objects.exclude(account__user_id="MASTER").select_related("account")
    }


def _ltps() -> dict[str, Decimal]:
    return dict(PaperInstrument.objects.filter(exchange="NFO").values_list("tradingsymbol", "last_price"))


@dataclass
class EntitlementModel:
    """Upper bounds of each child's entitled quantity E (DESIGN §3.7), in lots, one per side: how
    long (`long`) and how short (`short`) the child may be.

    Entries: the quantity of every child order at the broker whose intent belongs to an opening
    allocation, added to its side once when it first appears (whatever becomes of it: a bound may
    only be too high; kept per side, an entry cancelled unfilled on one side never lowers the other).
    Exits: when the master's position in an instrument shrinks between two ticks from P0 to P1 (same
    side), the bound of that side `B <- B - round_half_up(r x B)` with `r = (|P0| - |P1|) / |P0|`;
    flat: both 0; turned around: the side it left 0 (the side it turned to keeps its bound: a
    resting entry there, the open part of a stop-loss that crossed zero, was counted when it first
    appeared). Netting a tick's master orders can only give a smaller exit than the engine's
    per-event rule, and `B - round(r B)` is monotone in B, so each bound stays an upper bound of the
    engine's E on its side (entries in flight are counted by the engine before an exit and here
    after it: again only higher)."""

    long: dict[tuple[str, str], int] = field(default_factory=dict)  # (child, symbol) -> lots
    short: dict[tuple[str, str], int] = field(default_factory=dict)
    previous: tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]] = field(
        default_factory=lambda: ({}, {})
    )  # (long, short) a tick earlier
    seen_tags: set[str] = field(default_factory=set)

    def master_moved(self, symbol: str, before: int, after: int) -> None:
        if before == 0 or before == after:
            return
        if after == 0 or _sign(after) != _sign(before):
            # Flat: nothing on either side. Turned around: nothing on the side it left; the side
            # it turned to keeps its entries (the open part of a resting order that crossed zero
            # was seen, and counted, before it filled).
            left = self.long if before > 0 else self.short
            for bounds in (self.long, self.short) if after == 0 else (left,):
                for key in [k for k in bounds if k[1] == symbol]:
                    bounds[key] = 0
        if after != 0 and _sign(after) == _sign(before) and abs(after) < abs(before):
            r = Decimal(abs(before) - abs(after)) / Decimal(abs(before))
            side = self.long if before > 0 else self.short
            for key in [k for k in side if k[1] == symbol]:
                side[key] -= _lots_half_up(r * side[key])

    def entries_seen(self, book: dict[str, BookRow]) -> None:
        new = {row.tag: row for row in book.values() if row.tag and row.tag not in self.seen_tags}
        if not new:
            return
        opening = set(
            OrderMapping.objects.filter(tag__in=list(new), allocation__kind=AllocationKind.OPEN).values_list(
                "tag", flat=True
            )
        )
        for tag, row in new.items():
            self.seen_tags.add(tag)
            if tag in opening:
                key = (row.user, row.symbol)
                side = self.long if row.side == "BUY" else self.short
                side[key] = side.get(key, 0) + row.quantity // LOT

    def tick_done(self) -> None:
        self.previous = (dict(self.long), dict(self.short))

    def allowed(self, key: tuple[str, str]) -> tuple[int, int]:
        """(most short, most long) lots the child may hold: this tick's bounds or the last one's."""
        long_before, short_before = self.previous
        return (
            -max(self.short.get(key, 0), short_before.get(key, 0)),
            max(self.long.get(key, 0), long_before.get(key, 0)),
        )


class MoneyMachine(RuleBasedStateMachine):
    desk: Desk
    faults: Faults

    def __init__(self) -> None:
        super().__init__()
        self.busy = True
        self.savepoint = transaction.savepoint()
        self._clear_faults()
        failpoints.reset()
        self.restarts = 0
        self.orch = self._start()
        self.alive = True
        self.model = EntitlementModel()
        self.master_seen = self._master_positions()
        self.quiet = 0  # ticks run in a row with every fault clear
        self.flat_quiet = dict.fromkeys(SYMBOLS, 0)  # quiet ticks with the master flat there
        self.bracket: tuple[str, str] | None = None  # the master's (stop-loss, target) order ids
        self.entry_limit: str | None = None  # the master's resting LIMIT entry
        assert self.orch.run_tick().leader  # the master's baseline snapshot
        self.busy = False

    # --- helpers ---------------------------------------------------------------------------------

    def _start(self) -> Orchestrator:
        self.restarts += 1
        return Orchestrator(holder=f"M{self.restarts}", workers=0)

    def _clear_faults(self) -> None:
        f = self.faults
        for kind in (*ONE_SHOT, "token_expired", "reads_down", "hide_orders", "calculator_down"):
            getattr(f, kind).clear()
        f.extra_orders.clear()
        f.places.clear()
        f.before_place = None

    def _child(self, name: str) -> Account:
        return Account.objects.get(pk=self.desk.children[name].pk)

    def _master_positions(self) -> dict[str, int]:
        held = dict.fromkeys(SYMBOLS, 0)
        for symbol, qty in PaperPosition.objects.filter(account__user_id="MASTER").values_list(
            "tradingsymbol", "quantity"
        ):
            held[symbol] = held.get(symbol, 0) + qty // LOT
        return held

    def _master_live(self, order_id: str | None) -> bool:
        return (
            order_id is not None
            and PaperOrder.objects.filter(order_id=order_id, status__in=LIVE_STATUSES).exists()
        )

    def _price(self) -> int:
        return int(PaperInstrument.objects.get(exchange="NFO", tradingsymbol=FUT).last_price)

    def _faults_clear(self) -> bool:
        f = self.faults
        if not self.alive or f.token_expired or any(getattr(f, k) for k in ONE_SHOT):
            return False
        control = engine_control_get()
        if control.halted or control.dry_run:
            return False
        children = Account.objects.filter(pk__in=[c.pk for c in self.desk.children.values()])
        return (
            not children.exclude(status=AccountStatus.ACTIVE).exists()
            and not children.filter(dry_run=True).exists()
        )

    def _gated(self) -> set[str]:
        """Children nothing may reach this tick: halted or dry-run, or all while the engine is."""
        control = engine_control_get()
        if control.halted or control.dry_run:
            return set(NAMES)
        children = Account.objects.filter(pk__in=[c.pk for c in self.desk.children.values()])
        return set(
            children.filter(status=AccountStatus.HALTED).values_list("broker_user_id", flat=True)
        ) | set(children.filter(dry_run=True).values_list("broker_user_id", flat=True))

    def _place(self, side: str, symbol: str, lots: int, **kw: Any) -> str | None:
        if lots <= 0:
            return None
        order_id = self.desk.place(side, symbol, lots * LOT, **kw)
        status = PaperOrder.objects.values_list("status", flat=True).get(order_id=order_id)
        note(f"master {side} {lots} {symbol} {kw.get('order_type', 'MARKET')} -> {status}")
        return order_id

    def _within(self, symbol: str, held: int) -> bool:
        low, high = LIMITS[symbol]
        return low <= held <= high

    # --- the tick and its checks -----------------------------------------------------------------

    def _engine_saw_master(self) -> bool:
        """Whether the engine has read (and recorded) the master's book as it is now: every master
        order known to it with its fills. A tick that died before reading the book (a crash while
        the tick's first step looks up the children's orders) leaves the master's orders of that
        tick to the next one, which sees them together with the later ones."""
        book = set(
            PaperOrder.objects.filter(account__user_id="MASTER").values_list("order_id", "filled_quantity")
        )
        known = set(MasterOrder.objects.values_list("broker_order_id", "filled_quantity"))
        return book <= known

    def _tick(self, *, crash: tuple[str, int] | None = None) -> None:
        now_master = self._master_positions()
        clear = self._faults_clear()
        gated = self._gated()
        before = _child_book()
        ltps = _ltps()
        if crash is not None:
            failpoints.configure({crash[0]: f"raise:{crash[1]}"})
        try:
            result = self.orch.run_tick()
            assert result.leader
            if result.errors:
                event("tick errors")
                note(f"tick errors: {result.errors[:3]}")
        except FailpointTriggered:
            self.alive = False
            event(f"crashed at {crash[0] if crash else '?'}")
        finally:
            failpoints.reset()
        after = _child_book()
        self._check_gate(gated, before, after)
        self._check_caps(before, after, ltps)
        # The master's moves are observed at the engine's own reads of its book: the engine nets a
        # tick's filled buys and sells of an instrument (`replication.events.classify`), so a move
        # the engine never read on its own (its tick died first) must not be split off here.
        if crash is None or self._engine_saw_master():
            for symbol in SYMBOLS:
                self.model.master_moved(symbol, self.master_seen[symbol], now_master[symbol])
            self.master_seen = now_master
        self.model.entries_seen(after)
        self.quiet = self.quiet + 1 if clear and self.alive else 0
        for symbol in SYMBOLS:
            flat = clear and self.alive and now_master[symbol] == 0 and self._master_positions()[symbol] == 0
            self.flat_quiet[symbol] = self.flat_quiet[symbol] + 1 if flat else 0
        self._check_bound(after)
        self._check_flat(after)
        self.model.tick_done()

    def _check_gate(self, gated: set[str], before: dict[str, BookRow], after: dict[str, BookRow]) -> None:
        if "gate" not in CHECKS or not gated:
            return
        reached = sorted(
            f"{row.user} {row.side} {row.quantity} {row.symbol} {row.order_type} {row.status}"
            + (
                " (new)"
                if oid not in before
                else f" (was {before[oid].status}, mods {before[oid].modifications})"
            )
            for oid, row in after.items()
            if row.user in gated and before.get(oid) != row
        )
        assert not reached, (
            f"orders reached halted/dry-run children or a halted engine ({sorted(gated)}): {reached}"
        )

    def _caps_breaches(self, row: BookRow, ltps: dict[str, Decimal]) -> list[str]:
        caps = CAPS.get(row.user, {})
        out = []
        lots = row.quantity // LOT
        if caps.get("max_lots_per_order") is not None and lots > caps["max_lots_per_order"]:
            out.append(f"{lots} lots > max {caps['max_lots_per_order']} lots per order")
        if caps.get("max_quantity") is not None and row.quantity > caps["max_quantity"]:
            out.append(f"quantity {row.quantity} > max {caps['max_quantity']}")
        if caps.get("max_order_value") is not None:
            if row.order_type in ("LIMIT", "SL") and row.price > 0:
                price = row.price
            elif row.order_type == "SL-M":
                price = row.trigger
            else:
                price = ltps[row.symbol]
            if row.quantity * price > caps["max_order_value"]:
                out.append(f"value {row.quantity * price} > max {caps['max_order_value']}")
        return out

    def _check_caps(
        self, before: dict[str, BookRow], after: dict[str, BookRow], ltps: dict[str, Decimal]
    ) -> None:
        if "caps" not in CHECKS:
            return
        written = {
            oid: row
            for oid, row in after.items()
            if oid not in before
            or (before[oid].quantity, before[oid].order_type, before[oid].price, before[oid].modifications)
            != (row.quantity, row.order_type, row.price, row.modifications)
        }
        if not written:
            return
        kinds = dict(
            OrderMapping.objects.filter(tag__in=[r.tag for r in written.values()]).values_list(
                "tag", "allocation__kind"
            )
        )
        entries, others = [], []
        for row in written.values():
            breaches = self._caps_breaches(row, ltps)
            if breaches:
                line = f"{row.user} {row.side} {row.quantity} {row.symbol} {row.order_type}: {breaches}"
                (entries if kinds.get(row.tag) == AllocationKind.OPEN else others).append(
                    f"{line} [{kinds.get(row.tag)}]"
                )
        assert not entries, f"entry orders above the child's caps: {entries}"
        assert not others, f"exit/modified/other orders above the child's caps: {others}"

    def _held(self, book: dict[str, BookRow]) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        """Engine-placed filled position per (child, symbol), signed quantity; and what resting
        child orders would take off it (the reducing side). A copy of a master exit that has not
        filled at the master (a stop-loss, a target, resting there) takes nothing off: it fills
        only if the master's does, and until then the child is judged by what it holds."""
        tags = set(OrderMapping.objects.values_list("tag", flat=True))
        waiting = self._copies_of_resting_master_exits()
        held: Counter[tuple[str, str]] = Counter()
        resting: Counter[tuple[str, str]] = Counter()
        for row in book.values():
            if row.tag not in tags:
                continue
            sign = 1 if row.side == "BUY" else -1
            held[(row.user, row.symbol)] += sign * row.filled
            if row.status in LIVE_STATUSES and row.tag not in waiting:
                resting[(row.user, row.symbol, row.side)] += row.quantity - row.filled  # type: ignore[index]
        reducing: Counter[tuple[str, str]] = Counter()
        for key, qty in held.items():
            side = "SELL" if qty > 0 else "BUY"
            reducing[key] = min(abs(qty), resting[(key[0], key[1], side)])  # type: ignore[index]
        return held, reducing

    def _copies_of_resting_master_exits(self) -> set[str]:
        """Tags of child orders copying a master exit whose orders at the exchange have filled
        nothing yet (read at the paper exchange; the engine's rows only link tag to master order)."""
        links = OrderMapping.objects.filter(allocation__kind=AllocationKind.CLOSE).values_list(
            "tag", "allocation__master_orders__broker_order_id"
        )
        master: dict[str, set[str]] = {}
        for tag, order_id in links:
            if order_id:
                master.setdefault(tag, set()).add(order_id)
        filled = set(
            PaperOrder.objects.filter(account__user_id="MASTER", filled_quantity__gt=0).values_list(
                "order_id", flat=True
            )
        )
        return {tag for tag, ids in master.items() if not ids & filled}

    def _check_bound(self, book: dict[str, BookRow]) -> None:
        if "bound" not in CHECKS or self.quiet < SETTLE:
            return
        held, reducing = self._held(book)
        over = []
        for key, qty in held.items():
            projected = _sign(qty) * ((abs(qty) - reducing[key]) // LOT)
            low, high = self.model.allowed(key)
            if not low <= projected <= high:
                over.append(f"{key[0]} {key[1]}: holds {qty // LOT} lots, entitled at most {low}..{high}")
        assert not over, f"children above their entitlement {SETTLE} quiet ticks on: {over}"

    def _check_not_past_zero(self) -> None:
        """Right after the price moved (resting orders matched, before the engine's next tick),
        faults clear for two ticks: no child's copies took it past zero, onto a side it has no
        entitlement on (a copy of a resting exit larger than what the child holds)."""
        if "zero" not in CHECKS or self.quiet < 2:
            return
        held, _ = self._held(_child_book())
        past = []
        for key, qty in held.items():
            low, high = self.model.allowed(key)
            if (qty < 0 and low == 0) or (qty > 0 and high == 0):
                past.append(f"{key[0]} {key[1]}: holds {qty}, entitled at most {low}..{high} lots")
        assert not past, f"children past zero when the price moved: {past}"

    def _check_flat(self, book: dict[str, BookRow]) -> None:
        if "flat" not in CHECKS:
            return
        held, _ = self._held(book)
        left = [
            f"{user} holds {qty} {symbol}"
            for (user, symbol), qty in sorted(held.items())
            if qty and self.flat_quiet[symbol] >= SETTLE
        ]
        assert not left, f"master flat for {SETTLE} quiet ticks, children still hold: {left}"

    # --- the master ------------------------------------------------------------------------------

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(["BUY", "SELL"]),
        lots=st.integers(min_value=1, max_value=3),
    )
    @_step
    def master_market(self, symbol: str, side: str, lots: int) -> None:
        """An entry, an add, a partial exit or an order crossing zero (whatever fits the limits)."""
        held = self._master_positions()[symbol]
        sign = 1 if side == "BUY" else -1
        if self._within(symbol, held + sign * lots):
            self._place(side, symbol, lots)

    @rule(symbol=st.sampled_from(SYMBOLS), part=st.fractions(min_value=0, max_value=1))
    @_step
    def master_exit(self, symbol: str, part: Any) -> None:
        """Close part (at least a lot) or all of the position."""
        held = self._master_positions()[symbol]
        if held:
            lots = max(1, round(abs(held) * part))
            self._place("SELL" if held > 0 else "BUY", symbol, lots)

    @rule(lots=st.integers(min_value=1, max_value=2))
    @_step
    def master_hedge(self, lots: int) -> None:
        """BUY calls and SELL futures in one tick: a two-leg group."""
        self._hedge(lots)

    @rule(lots=st.integers(min_value=1, max_value=2), children=st.sets(st.sampled_from(NAMES), min_size=1))
    @_step
    def master_hedge_buy_leg_rejected(self, lots: int, children: set[str]) -> None:
        """A hedge while these children's RMS rejects their next order after accepting it (the
        buy leg, sent first): their sell leg must not follow (defect 3)."""
        self.faults.reject_after_accept.update(children)
        self._hedge(lots)

    def _hedge(self, lots: int) -> None:
        held = self._master_positions()
        if self._within(CALL, held[CALL] + lots) and self._within(FUT, held[FUT] - lots):
            self._place("BUY", CALL, lots)
            self._place("SELL", FUT, lots)

    @precondition(lambda self: self.bracket is None)
    @rule()
    @_step
    def master_bracket(self) -> None:
        """A stop-loss and a target on the whole future position, resting together."""
        held = self._master_positions()[FUT]
        if not held:
            return
        price = self._price()
        side = "SELL" if held > 0 else "BUY"
        stop = Decimal(price - STEP if held > 0 else price + STEP)
        target = Decimal(price + STEP if held > 0 else price - STEP)
        sl = self._place(side, FUT, abs(held), order_type="SL-M", trigger=stop)
        tp = self._place(side, FUT, abs(held), order_type="LIMIT", price=target)
        if sl and tp:
            self.bracket = (sl, tp)

    @precondition(lambda self: self.entry_limit is None)
    @rule(side=st.sampled_from(["BUY", "SELL"]), lots=st.integers(min_value=1, max_value=2))
    @_step
    def master_limit_entry(self, side: str, lots: int) -> None:
        """A resting LIMIT on the future, one level away."""
        held = self._master_positions()[FUT]
        sign = 1 if side == "BUY" else -1
        if not self._within(FUT, held + sign * lots):
            return
        price = Decimal(self._price() - sign * STEP)
        self.entry_limit = self._place(side, FUT, lots, order_type="LIMIT", price=price)

    @precondition(lambda self: self.entry_limit is not None)
    @rule(
        how=st.sampled_from(["price", "quantity", "market", "cancel"]),
        lots=st.integers(min_value=1, max_value=3),
    )
    @_step
    def master_change_limit(self, how: str, lots: int) -> None:
        """Modify the resting LIMIT entry (price, quantity, LIMIT -> MARKET) or cancel it."""
        order_id = self.entry_limit
        assert order_id is not None
        if not self._master_live(order_id):
            self.entry_limit = None
            return
        order = PaperOrder.objects.get(order_id=order_id)
        try:
            if how == "cancel":
                paper_order_cancel(user_id="MASTER", order_id=order_id)
            elif how == "market":
                sign = 1 if order.side == "BUY" else -1
                if self._within(FUT, self._master_positions()[FUT] + sign * order.quantity // LOT):
                    paper_order_modify(user_id="MASTER", order_id=order_id, order_type="MARKET")
            elif how == "quantity":
                paper_order_modify(user_id="MASTER", order_id=order_id, quantity=lots * LOT)
            else:
                sign = 1 if order.side == "BUY" else -1
                paper_order_modify(
                    user_id="MASTER", order_id=order_id, price=order.price - sign * Decimal(STEP) / 2
                )
        except BrokerError as exc:  # the exchange refused the change (margin, limits): the master tried
            note(f"master {how} of its LIMIT refused: {exc}")
            return
        note(f"master {how} of its LIMIT {order.side} {order.quantity}")

    @rule(level=st.sampled_from(LEVELS))
    @_step
    def price_move(self, level: int) -> None:
        """NIFTY moves (the call at half the move); resting orders match; a filled bracket leg's
        twin is cancelled by the master at once."""
        paper_price_set(exchange="NFO", tradingsymbol=FUT, price=Decimal(level))
        paper_price_set(exchange="NFO", tradingsymbol=CALL, price=Decimal(200 + (level - 20000) // 2))
        note(f"price {level}")
        self._check_not_past_zero()
        if self.bracket is not None:
            live = [oid for oid in self.bracket if self._master_live(oid)]
            if len(live) == 1:
                paper_order_cancel(user_id="MASTER", order_id=live[0])
                note("master cancels the other bracket leg")
            if len(live) <= 1:
                self.bracket = None

    @precondition(lambda self: self.bracket is not None)
    @rule()
    @_step
    def master_trail_stop(self) -> None:
        """The master moves its stop-loss half a level toward the price (trigger only)."""
        assert self.bracket is not None
        stop = self.bracket[0]
        if not self._master_live(stop):
            return
        order = PaperOrder.objects.get(order_id=stop)
        toward = Decimal(STEP) / 2 * (1 if order.side == "SELL" else -1)
        try:
            paper_order_modify(user_id="MASTER", order_id=stop, trigger_price=order.trigger_price + toward)
        except BrokerError as exc:  # the exchange refused it (too many modifications)
            note(f"master trail of its stop-loss refused: {exc}")
            return
        note(f"master trails its stop-loss to {order.trigger_price + toward}")

    @precondition(lambda self: self.bracket is not None)
    @rule()
    @_step
    def master_cancel_bracket(self) -> None:
        assert self.bracket is not None
        for oid in self.bracket:
            if self._master_live(oid):
                paper_order_cancel(user_id="MASTER", order_id=oid)
        self.bracket = None
        note("master cancels its stop-loss and target")

    # --- ticks -------------------------------------------------------------------------------------

    @precondition(lambda self: self.alive)
    @rule()
    @_step
    def tick(self) -> None:
        self._tick()

    @precondition(lambda self: self.alive)
    @rule(point=st.sampled_from(sorted(failpoints.NAMES)), nth=st.integers(min_value=1, max_value=3))
    @_step
    def crash(self, point: str, nth: int) -> None:
        """A tick that dies at a failpoint (if it gets there): the process is gone until restart."""
        self._tick(crash=(point, nth))

    @precondition(lambda self: not self.alive)
    @rule()
    @_step
    def restart(self) -> None:
        self._restart()

    def _restart(self) -> None:
        OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        self.orch = self._start()
        self.alive = True

    # --- faults ------------------------------------------------------------------------------------

    @rule(kind=st.sampled_from(ONE_SHOT), children=st.sets(st.sampled_from(NAMES), min_size=1, max_size=3))
    @_step
    def one_shot_fault(self, kind: str, children: set[str]) -> None:
        """The next order of each: rejected after accept, a 429, a timeout after (or before) accept."""
        getattr(self.faults, kind).update(children)

    @rule(children=st.sets(st.sampled_from(NAMES), min_size=1, max_size=2))
    @_step
    def expire_tokens(self, children: set[str]) -> None:
        self.faults.token_expired.update(children)

    @precondition(lambda self: bool(self.faults.token_expired))
    @rule()
    @_step
    def relogin(self) -> None:
        self._relogin()

    def _relogin(self) -> None:
        self.faults.token_expired.clear()
        for name in NAMES:
            account = self._child(name)
            if account.status == AccountStatus.NEEDS_LOGIN:
                account_set_status(
                    account=account, status=AccountStatus.ACTIVE, actor=STAFF, reason="logged in"
                )

    @rule(name=st.sampled_from(NAMES), status=st.sampled_from([AccountStatus.HALTED, AccountStatus.ACTIVE]))
    @_step
    def halt_or_resume_child(self, name: str, status: str) -> None:
        account = self._child(name)
        if account.status in (AccountStatus.ACTIVE, AccountStatus.HALTED):
            account_set_status(account=account, status=status, actor=STAFF, reason="stateful")

    @rule(name=st.sampled_from(NAMES), enable=st.booleans())
    @_step
    def disable_or_enable_child(self, name: str, enable: bool) -> None:
        """Disable (forced, with a reason, where the service asks for it) or enable again."""
        account = self._child(name)
        if enable:
            if account.status == AccountStatus.DISABLED:
                account_set_status(account=account, status=AccountStatus.ACTIVE, actor=STAFF, reason="back")
            return
        if account.status != AccountStatus.DISABLED:
            extra: dict[str, Any] = {}
            if "force" in inspect.signature(account_set_status).parameters:
                extra["force"] = True
            account_set_status(
                account=account, status=AccountStatus.DISABLED, actor=STAFF, reason="client left", **extra
            )

    @rule(halted=st.booleans())
    @_step
    def engine_halt(self, halted: bool) -> None:
        engine_control_update(actor=STAFF, halted=halted)

    @rule(on=st.booleans(), name=st.none() | st.sampled_from(NAMES))
    @_step
    def dry_run(self, on: bool, name: str | None) -> None:
        """Dry-run for the engine (name None) or one child."""
        if name is None:
            engine_control_update(actor=STAFF, dry_run=on)
        else:
            Account.objects.filter(pk=self.desk.children[name].pk).update(dry_run=on)

    @rule()
    @_step
    def all_clear(self) -> None:
        self._all_clear()

    def _all_clear(self) -> None:
        """Every fault off: one-shots disarmed, logged in, resumed, enabled, engine on, restarted."""
        for kind in ONE_SHOT:
            getattr(self.faults, kind).clear()
        self._relogin()
        engine_control_update(actor=STAFF, halted=False, dry_run=False)
        Account.objects.filter(pk__in=[c.pk for c in self.desk.children.values()]).update(dry_run=False)
        for name in NAMES:
            account = self._child(name)
            if account.status != AccountStatus.ACTIVE or account.breaker_tripped_at is not None:
                if account.status == AccountStatus.ACTIVE:
                    account = account_set_status(account=account, status=AccountStatus.PAUSED, actor=STAFF)
                account_set_status(account=account, status=AccountStatus.ACTIVE, actor=STAFF, reason="clear")
        if not self.alive:
            self._restart()

    # --- always ------------------------------------------------------------------------------------

    @invariant()
    def no_child_order_twice(self) -> None:
        if "dup" not in CHECKS:
            return
        per_tag = Counter(
            PaperOrder.objects.exclude(account__user_id="MASTER")
            .exclude(tag="")
            .values_list("tag", flat=True)
        )
        duplicates = {tag: n for tag, n in per_tag.items() if n > 1}
        assert not duplicates, f"tags placed more than once at the broker: {duplicates}"

    @invariant()
    def no_naked_hedge_sell_leg(self) -> None:
        if "hedge" not in CHECKS:
            return
        book = list(
            PaperOrder.objects.exclude(account__user_id="MASTER")
            .exclude(tag="")
            .values_list("account__user_id", "tag", "side", "status", "filled_quantity")
        )
        by_tag = {tag: (user, side, status, filled) for user, tag, side, status, filled in book}
        mappings = {
            tag: (group, alloc)
            for tag, group, alloc in OrderMapping.objects.filter(tag__in=list(by_tag)).values_list(
                "tag", "allocation__group_key", "allocation_id"
            )
        }
        groups = {mappings[t][0] for t in mappings}
        buy_legs: dict[str, set[int]] = {}
        for alloc_id, group in Allocation.objects.filter(
            group_key__in=groups, kind=AllocationKind.OPEN, side="BUY"
        ).values_list("pk", "group_key"):
            buy_legs.setdefault(group, set()).add(alloc_id)
        naked = []
        for tag, (user, side, status, filled) in by_tag.items():
            if side != "SELL" or tag not in mappings:
                continue
            group, alloc = mappings[tag]
            legs = buy_legs.get(group, set())
            kind = Allocation.objects.values_list("kind", flat=True).get(pk=alloc)
            if not legs or kind != AllocationKind.OPEN or not (filled or status in LIVE_STATUSES):
                continue
            for leg in legs:
                statuses = [
                    by_tag[t][2] for t, (g, a) in mappings.items() if a == leg and by_tag[t][0] == user
                ]
                if not statuses or all(s == OrderStatus.REJECTED for s in statuses):
                    naked.append(
                        f"{user}: sell leg {tag} ({status}, filled {filled}), buy leg {statuses or 'absent'}"
                    )
        assert not naked, f"hedge sell legs without an accepted buy leg in the child's book: {naked}"

    # --- after the run: quiesce and converge -------------------------------------------------------

    def teardown(self) -> None:
        try:
            if not self.busy:
                self._converge()
        finally:
            self._clear_faults()
            failpoints.reset()
            transaction.savepoint_rollback(self.savepoint)

    def _converge(self) -> None:
        note("teardown: faults off, settle, master flattens, settle")
        self._all_clear()
        for _ in range(SETTLE):
            self._tick()
        held = self._master_positions()
        if self.bracket is not None or self.entry_limit is not None:
            for oid in (*(self.bracket or ()), self.entry_limit):
                if self._master_live(oid):
                    paper_order_cancel(user_id="MASTER", order_id=oid)  # type: ignore[arg-type]
        for symbol, lots in held.items():
            if lots:
                self._place("SELL" if lots > 0 else "BUY", symbol, abs(lots))
        for _ in range(SETTLE):
            self._tick()
        if "flat" in CHECKS:
            held_after, _ = self._held(_child_book())
            left = {k: v for k, v in held_after.items() if v}
            assert not left, f"master flat and faults clear for {SETTLE} ticks, children still hold: {left}"
        self.orch.close()


def _run(desk_faults: Faults, *, examples: int, steps: int, derandomize: bool = False) -> None:
    desk = build_desk()
    for name, caps in CAPS.items():
        Account.objects.filter(pk=desk.children[name].pk).update(**caps)
    machine = type("Machine", (MoneyMachine,), {"desk": desk, "faults": desk_faults})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # The suite's run is derandomized: the same examples for the same modules loaded
            # (Hypothesis also draws constants from the code it finds in the process, so the test
            # alone and a full run may see different ones), and the examples database of a long run
            # is not replayed into it; `make test-slow` explores.
            derandomize=derandomize,
            database=None if derandomize else settings.default.database,
        ),
    )


def test_money_rules_hold_on_every_path(db, faults):
    """Issue 11, proof: random master scripts and faults; after every tick no child order twice, no
    naked hedge sell leg, no order above caps, nothing sent through a closed gate, no child above its
    entitlement once faults clear, every child flat SETTLE ticks after the master (defects 3, 4, 5,
    8, 11, 17, 18 and the owed exits of §3.7)."""
    _run(
        faults,
        examples=int(os.environ.get("MONEY_EXAMPLES", "25")),
        steps=30,
        derandomize=os.environ.get("MONEY_RANDOM") != "1",
    )


@pytest.mark.slow
def test_money_rules_hold_on_every_path_long(db, faults):
    """Issue 11, proof (long): the same machine, more and longer examples."""
    _run(faults, examples=200, steps=60)


ALL = frozenset(NAMES)
# Scripts the long run (or a review) found, shrunk, replayed on every `make test`: each broke a
# money rule.
FOUND_BY_THE_LONG_RUN = {
    # Entry and stop-loss/target in one tick, then a hedge: the children were sold at MARKET
    # while the master's stop-loss rested (an owed exit judged against an unfilled exit).
    "stop_loss_with_the_entry": [
        ("master_market", {"symbol": FUT, "side": "BUY", "lots": 2}),
        ("master_bracket", {}),
        ("master_hedge_buy_leg_rejected", {"children": {"C1"}, "lots": 1}),
        ("tick", {}),
        ("price_move", {"level": 19700}),
        ("all_clear", {}),
    ],
    # Half booked at MARKET under a stop-loss on the whole: children kept their full size.
    "half_booked_under_a_stop_loss": [
        ("master_market", {"symbol": FUT, "side": "BUY", "lots": 2}),
        ("tick", {}),
        ("master_bracket", {}),
        ("tick", {}),
        ("master_exit", {"symbol": FUT, "part": Fraction(1, 2)}),
    ],
    # The same, then the master trails its stop-loss (found in review): the cut copy grew back.
    "stop_loss_trailed_after_half_booked": [
        ("master_market", {"symbol": FUT, "side": "BUY", "lots": 2}),
        ("tick", {}),
        ("master_bracket", {}),
        ("tick", {}),
        ("master_exit", {"symbol": FUT, "part": Fraction(1, 2)}),
        ("tick", {}),
        ("master_trail_stop", {}),
        ("tick", {}),
        ("tick", {}),
        ("price_move", {"level": 19850}),
        ("tick", {}),
    ],
    # A stop-loss that crossed zero when placed closed only, after the master added: the copies of
    # its opening part entitled the children to a position the master never had; and a resting
    # stop-loss on the whole position cancelled the children's resting entries.
    "crossing_stop_loss_closes_only": [
        ("master_hedge_buy_leg_rejected", {"children": set(ALL), "lots": 1}),
        ("master_limit_entry", {"side": "SELL", "lots": 2}),
        ("master_hedge_buy_leg_rejected", {"children": set(ALL), "lots": 2}),
        ("master_bracket", {}),
        ("one_shot_fault", {"kind": "reject_after_accept", "children": {"C1"}}),
        ("master_market", {"symbol": FUT, "side": "BUY", "lots": 2}),
        ("tick", {}),
        ("one_shot_fault", {"kind": "reject_after_accept", "children": {"C1", "C2", "C3"}}),
        ("price_move", {"level": 20150}),
        ("master_bracket", {}),
        ("expire_tokens", {"children": {"C1", "C2"}}),
        ("dry_run", {"on": True, "name": None}),
        ("price_move", {"level": 19700}),
    ],
    # In dry run the master adds (C2's entry only planned), the engine is halted, the master sells
    # part: E counted the dry run, H did not (the gate said "halted"), the row settled, and once
    # both were lifted C2 kept the lot the planned entry had stood for.
    "part_exit_under_a_halt_in_dry_run": [
        ("master_hedge", {"lots": 2}),
        ("tick", {}),
        ("dry_run", {"on": True, "name": None}),
        ("master_hedge_buy_leg_rejected", {"children": set(ALL), "lots": 1}),
        ("tick", {}),
        ("engine_halt", {"halted": True}),
        ("master_exit", {"symbol": CALL, "part": Fraction(81, 164)}),
        ("tick", {}),
    ],
}


@pytest.mark.parametrize("script", sorted(FOUND_BY_THE_LONG_RUN))
def test_money_rules_hold_on_the_scripts_the_long_run_found(db, faults, monkeypatch, script):
    """The machine (its invariants after every step, its teardown: faults off, settle, master
    flat, settle) on each script the long run found, exactly as it ran."""
    monkeypatch.setattr(f"{__name__}.note", lambda *args, **kwargs: None)
    monkeypatch.setattr(f"{__name__}.event", lambda *args, **kwargs: None)
    desk = build_desk()
    for name, caps in CAPS.items():
        Account.objects.filter(pk=desk.children[name].pk).update(**caps)
    _replay(
        type("Machine", (MoneyMachine,), {"desk": desk, "faults": faults})(), FOUND_BY_THE_LONG_RUN[script]
    )


def _replay(machine: MoneyMachine, script: list[tuple[str, dict[str, Any]]]) -> None:
    """Run `script` through `machine` (its invariants after every step), then its teardown."""
    try:
        for rule_name, kwargs in script:
            getattr(machine, rule_name)(**kwargs)
            machine.no_child_order_twice()
            machine.no_naked_hedge_sell_leg()
    except BaseException:
        machine.busy = True  # teardown only cleans up
        raise
    finally:
        machine.teardown()


# `make soak`, short: the money faults, child caps and the master's stop-loss/target pairs, resizes
# and zero crossings on the Kite path (lab.soak); the long run is `make soak`.
MONEY_SOAK = SoakConfig(seed=20251122, events=30, children=5, fault_rate=0.5, workers=4)


@pytest.mark.django_db(transaction=True)
def test_soak_money_session_starves_no_exit_and_breaches_no_cap():
    """Issue 11, proof (`make soak`): staff halts, dry-run, disables, rejections after accept, child
    caps, stop-loss/target pairs, LIMIT -> MARKET, resizes and zero crossings; then faults off, the
    master flattens: no duplicate, no lost order, no starved exit, no cap breach."""
    report = run_soak(MONEY_SOAK)

    assert report.findings.problems() == [], report.line()
    money_faults = {"reject_after_accept", "child_halt", "engine_halt", "dry_run", "disable"}
    assert money_faults & set(report.fault_kinds), report.fault_kinds
    assert {"bracket", "cross_zero", "limit_quantity", "limit_to_market"} & set(report.event_kinds)
    assert Account.objects.exclude(max_lots_per_order=None, max_quantity=None, max_order_value=None).exists()
    assert " starved=0 cap_breaches=0 " in report.line()


# --- Issues 15 and 16: the same invariants on a mixed desk ------------------------------------------
# C1 and C2 are Angel One accounts, C4 a Dhan account, C5 an Alice Blue account, C3 stays on the
# paper exchange. The engine trades them through each broker's adapter and real SDK
# (smartapi-python, dhanhq, Ant-A3), whose HTTP calls are answered in this thread by that broker's
# simulator (AngelSim / DhanSim / AliceSim `.handle`, the paper book behind each), so they see this
# test's transaction. Angel's pacing (one book read a second) runs on a fake clock, Dhan's and
# Alice Blue's budgets on a clock that moves a second a look (they are not under test here). The
# machine's fault switches (tests/faulty_broker.Faults) reach every child: the paper one through
# FaultyBroker, the others through FaultyAngel, FaultyDhan and FaultyAlice (each adapter raising
# its own errors).
import contextlib  # noqa: E402  (this section is appended to the issue 11 module)
from collections.abc import Iterator  # noqa: E402

MIXED_ANGEL = ("C1", "C2")
MIXED_DHAN = ("C4",)
MIXED_ALICE = ("C5",)  # the child capped at one lot per order: its orders are sliced
# Three lots of the master's: every child of the desk reaches at least a lot, then all is sold.
MIXED_EVERY_CHILD_TRADES = [
    ("master_market", {"symbol": FUT, "side": "BUY", "lots": 3}),
    ("tick", {}),
    ("master_exit", {"symbol": FUT, "part": Fraction(1)}),
    ("tick", {}),
]
ANGEL_ROOT = "http://127.0.0.1:9"  # loopback (the simulator's credentials stay here); nothing listens
DHAN_ROOT = "http://127.0.0.1:10"
ALICE_ROOT = "http://127.0.0.1:12"


class _FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class _TickingTime(_FakeTime):
    """A fake clock that moves a second each time it is read."""

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _angel_in_process(monkeypatch: pytest.MonkeyPatch, sim: Any) -> None:
    """`requests` calls to ANGEL_ROOT answered by `sim` in this thread; others go out as usual."""
    from urllib.parse import parse_qs, urlsplit

    import requests

    from lab.kite_sim.wire import Request

    real_request, real_get = requests.request, requests.get

    def answer(method: str, url: str, **kwargs: Any) -> requests.Response:
        prepared = requests.Request(
            method, url, params=kwargs.get("params"), data=kwargs.get("data"), headers=kwargs.get("headers")
        ).prepare()
        parts = urlsplit(prepared.url)
        body = prepared.body or b""
        reply = sim.handle(
            Request(
                method=method.upper(),
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in prepared.headers.items()},
                body=body.encode() if isinstance(body, str) else body,
            )
        )
        response = requests.Response()
        response.status_code = reply.status
        response._content = reply.body
        response.headers["Content-Type"] = reply.content_type
        response.encoding = "utf-8"
        response.url = prepared.url or url
        return response

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        return (
            answer(method, url, **kwargs)
            if url.startswith(ANGEL_ROOT)
            else real_request(method, url, **kwargs)
        )

    def get(url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return (
            answer("GET", url, params=params, **kwargs)
            if url.startswith(ANGEL_ROOT)
            else real_get(url, params, **kwargs)
        )

    monkeypatch.setattr(requests, "request", request)
    monkeypatch.setattr(requests, "get", get)


@dataclass
class MixedSims:
    angel: Any
    dhan: Any
    alice: Any


@contextlib.contextmanager
def _mixed_desk(faults: Faults, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Desk, MixedSims]]:
    """The money machine's desk with MIXED_ANGEL on Angel One, MIXED_DHAN on Dhan and MIXED_ALICE
    on Alice Blue, served in-process (above; tests.faulty_broker.serve_in_process), each client a
    FaultyAngel / FaultyDhan / FaultyAlice switched by `faults`. The registry and the process-wide
    budgets are put back afterwards."""
    from django.conf import settings as django_settings

    from brokers import registry
    from brokers.alice import budget as alice_budget
    from brokers.alice.scrip import ContractCache
    from brokers.angel.budget import Budgets, Pacer, WriteBudget, forget_budgets
    from brokers.dhan import budget as dhan_budget
    from brokers.dhan.scrip import ScripCache
    from lab.alice_demo import move_to_alice
    from lab.alice_sim.server import AliceSim
    from lab.angel_demo import move_to_angel
    from lab.angel_sim.server import AngelSim
    from lab.dhan_demo import move_to_dhan
    from lab.dhan_sim.server import DhanSim
    from tests.faulty_broker import FaultyAlice, FaultyAngel, FaultyDhan, serve_in_process

    clock = _FakeTime()
    ticking = _TickingTime()
    scrips, contracts = ScripCache(), ContractCache()

    def angel_factory(creds: Any) -> FaultyAngel:
        budgets = Budgets(
            writes=WriteBudget(clock=clock, sleep=clock.sleep),
            book=Pacer(1, clock=clock, sleep=clock.sleep),
            positions=Pacer(1, clock=clock, sleep=clock.sleep),
            rms=Pacer(2, clock=clock, sleep=clock.sleep),
            login=Pacer(1, clock=clock, sleep=clock.sleep),
        )
        client = FaultyAngel(
            api_key=creds.api_key,
            client_code=creds.user_id,
            pin=creds.pin,
            totp_secret=creds.totp_secret,
            access_token=creds.access_token,
            budgets=budgets,
            sleep=clock.sleep,
        )
        client.faults = faults
        return client

    def dhan_factory(creds: Any) -> FaultyDhan:
        client = FaultyDhan(
            client_id=creds.user_id,
            access_token=creds.access_token,
            pin=creds.pin,
            totp_secret=creds.totp_secret,
            api_key=creds.api_key,
            root=DHAN_ROOT,
            scrip_cache=scrips,
            scrip_url=DHAN_ROOT + "/api-data/api-scrip-master.csv",
            budget=dhan_budget.WriteBudget(clock=ticking, sleep=ticking.sleep),
            sleep=ticking.sleep,
        )
        client.faults = faults
        return client

    def alice_factory(creds: Any) -> FaultyAlice:
        client = FaultyAlice(
            user_id=creds.user_id,
            api_key=creds.api_key,
            access_token=creds.access_token,
            root=ALICE_ROOT,
            contract_cache=contracts,
            contract_url=ALICE_ROOT + "/restpy/static/contract_master/V2/",
            budgets=alice_budget.Budgets(
                writes=alice_budget.Budget(alice_budget.ORDER_WRITES, clock=ticking, sleep=ticking.sleep),
                other=alice_budget.Budget(alice_budget.OTHER_CALLS, clock=ticking, sleep=ticking.sleep),
            ),
            sleep=ticking.sleep,
        )
        client.faults = faults
        return client

    sims = MixedSims(angel=AngelSim(pace_reads=False), dhan=DhanSim(), alice=AliceSim())
    monkeypatch.setattr(django_settings, "ANGEL_API_ROOT", ANGEL_ROOT)
    monkeypatch.setattr(django_settings, "DHAN_API_ROOT", DHAN_ROOT)
    monkeypatch.setattr(django_settings, "ALICE_API_ROOT", ALICE_ROOT + "/")
    _angel_in_process(monkeypatch, sims.angel)
    serve_in_process(monkeypatch, DHAN_ROOT, sims.dhan)
    serve_in_process(monkeypatch, ALICE_ROOT, sims.alice)
    factories = {"angel": angel_factory, "dhan": dhan_factory, "alice": alice_factory}
    previous = {kind: registry.register(kind, factory) for kind, factory in factories.items()}
    forgets = (forget_budgets, dhan_budget.forget_budgets, alice_budget.forget_budgets)
    for forget in forgets:
        forget()
    try:
        desk = build_desk()
        for name, caps in CAPS.items():
            Account.objects.filter(pk=desk.children[name].pk).update(**caps)
        for name in MIXED_ANGEL:
            move_to_angel(desk.children[name], sims.angel)
        for name in MIXED_DHAN:
            move_to_dhan(desk.children[name], sims.dhan)
        for name in MIXED_ALICE:
            move_to_alice(desk.children[name], sims.alice)
        yield desk, sims
    finally:
        for kind, before in previous.items():
            if before is None:
                registry.unregister(kind)
            else:
                registry.register(kind, before)
        for forget in forgets:
            forget()


def test_money_rules_hold_on_a_mixed_desk(db, faults, monkeypatch):
    """Issues 15 and 16, proof: the money machine on a desk mixing every broker, C1 and C2 on Angel
    One, C4 on Dhan, C5 on Alice Blue (real SDKs, their simulators) and C3 on the paper exchange: no
    order twice, no naked hedge leg, caps, gates, entitlement bound, flat after the master.
    5 examples of 20 steps (MONEY_MIXED_EXAMPLES), derandomized, not shrunk, after a fixed script
    in which every child trades (MIXED_EVERY_CHILD_TRADES): which examples Hypothesis generates
    depends on the modules the process has loaded (its constants are drawn from them), so a
    full run and a run of this test alone see different ones, and in some the small children
    (C1, C4, C5) never reach a lot."""
    from hypothesis import Phase

    with _mixed_desk(faults, monkeypatch) as (desk, sims):
        machine = type("MixedMachine", (MoneyMachine,), {"desk": desk, "faults": faults})
        with monkeypatch.context() as outside_hypothesis:
            outside_hypothesis.setattr(f"{__name__}.note", lambda *args, **kwargs: None)
            outside_hypothesis.setattr(f"{__name__}.event", lambda *args, **kwargs: None)
            _replay(machine(), MIXED_EVERY_CHILD_TRADES)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=int(os.environ.get("MONEY_MIXED_EXAMPLES", "5")),
                stateful_step_count=20,
                deadline=None,
                print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                derandomize=True,
                database=None,
                # No shrinking: a failure is reported as found (shrinking one takes minutes here).
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
            ),
        )
    for name in MIXED_ANGEL:
        assert Account.objects.get(broker_user_id=name).broker == "angel"
        assert sims.angel.hit_count(client_code=name, route="getOrderBook") > 0, (
            name,
            {hit: n for hit, n in sims.angel.hits.items() if hit.client_code == name},
            list(
                OrderMapping.objects.filter(child__broker_user_id=name).values_list(
                    "status", "reason_code", "broker_status"
                )
            ),
        )
    for name in MIXED_DHAN:
        assert Account.objects.get(broker_user_id=name).broker == "dhan"
        assert sims.dhan.hit_count(client_id=name, route="POST /v2/orders", status=200) > 0, name
        assert sims.dhan.hit_count(client_id=name, route="GET /v2/orders") > 0, name
    for name in MIXED_ALICE:
        assert Account.objects.get(broker_user_id=name).broker == "alice"
        assert sims.alice.hit_count(user_id=name, route="orders/placeorder", status=200) > 0, name
        assert sims.alice.hit_count(user_id=name, route="orders/book") > 0, name


def test_mixed_desk_angel_child_goes_flat_after_a_crash_and_a_disable(db, faults, monkeypatch):
    """The script Hypothesis found (with the default phases) on the mixed desk, replayed step by step:
    Angel child C2 was left short 2 lots with the master flat (its held-back exit was netted with
    an entry resting on the same side; fixed in the convergence stage, see test_money_longrun)."""
    from fractions import Fraction

    # The rules call hypothesis.event and note, which only work inside a Hypothesis run.
    monkeypatch.setattr(f"{__name__}.event", lambda *args, **kwargs: None)
    monkeypatch.setattr(f"{__name__}.note", lambda *args, **kwargs: None)
    with _mixed_desk(faults, monkeypatch) as (desk, _sim):
        state = type("MixedMachine", (MoneyMachine,), {"desk": desk, "faults": faults})()
        try:
            state.halt_or_resume_child(name="C1", status=AccountStatus.HALTED)
            state.all_clear()
            state.one_shot_fault(children={"C2", "C1"}, kind="reject_after_accept")
            for _ in range(4):
                state.all_clear()
            state.master_hedge_buy_leg_rejected(children={"C1", "C2", "C3", "C4", "C5"}, lots=1)
            state.tick()
            state.all_clear()
            state.dry_run(name=None, on=True)
            for _ in range(4):
                state.all_clear()
            state.master_exit(part=Fraction(9288, 30196424119), symbol=FUT)
            state.all_clear()
            state.disable_or_enable_child(enable=False, name="C2")
            state.crash(nth=3, point="after_broker_call")
            state.master_limit_entry(lots=1, side="SELL")
        finally:
            state.teardown()


def test_mixed_desk_faults_reach_the_angel_children(db, faults, monkeypatch):
    """The machine's faults aimed at the Angel children take effect there (FaultyAngel): an order
    rejected after accept shows in the Angel book, a timeout after accept is found by its tag and
    not sent again, an expired session moves the child to needs_login; the money rules hold and
    every child is flat after the master (teardown)."""
    monkeypatch.setattr(f"{__name__}.event", lambda *args, **kwargs: None)
    monkeypatch.setattr(f"{__name__}.note", lambda *args, **kwargs: None)
    angel = set(MIXED_ANGEL)
    with _mixed_desk(faults, monkeypatch) as (desk, _sim):
        state = type("MixedMachine", (MoneyMachine,), {"desk": desk, "faults": faults})()
        try:
            state.one_shot_fault(children={"C1"}, kind="reject_after_accept")
            state.one_shot_fault(children={"C2"}, kind="place_then_unknown")
            state.master_market(symbol=FUT, side="BUY", lots=2)
            state.tick()
            state.no_child_order_twice()
            rejected = PaperOrder.objects.filter(
                account__user_id="C1", status=OrderStatus.REJECTED, status_message__contains="after accept"
            )
            assert rejected.count() == 1
            assert PaperOrder.objects.filter(account__user_id="C2").count() == 1  # placed once
            assert not faults.reject_after_accept and not faults.place_then_unknown
            state.all_clear()
            for _ in range(3):
                state.tick()
                state.no_child_order_twice()
            state.one_shot_fault(children={"C2"}, kind="unknown_not_placed")
            state.master_exit(symbol=FUT, part=1)
            state.tick()
            assert not faults.unknown_not_placed  # C2's exit timed out before it was placed
            state.all_clear()
            for _ in range(3):
                state.tick()
                state.no_child_order_twice()
            state.expire_tokens(children={"C2"})
            state.one_shot_fault(children={"C1"}, kind="rate_limited_once")
            state.master_market(symbol=FUT, side="BUY", lots=2)
            state.tick()
            state.no_child_order_twice()
            assert Account.objects.get(broker_user_id="C2").status == AccountStatus.NEEDS_LOGIN
            assert not faults.rate_limited_once
            state.all_clear()
            for _ in range(3):
                state.tick()
                state.no_child_order_twice()
            assert {user for user, _tag in faults.places} >= angel
        finally:
            state.teardown()


def _mapping_of(name: str, **filters: Any) -> OrderMapping:
    return OrderMapping.objects.filter(child__broker_user_id=name, quantity__gt=0, **filters).latest("id")


def _held_lots(name: str) -> int:
    held = PaperPosition.objects.filter(account__user_id=name, tradingsymbol=FUT)
    return sum(held.values_list("quantity", flat=True)) // LOT


def test_mixed_desk_faults_reach_the_dhan_and_alice_children(db, faults, monkeypatch):
    """Issue 16: the machine's faults aimed at the Dhan child (C4, FaultyDhan) and the Alice Blue
    child (C5, FaultyAlice) take effect there. A timeout after accept is found by its tag and not sent
    again (on Dhan by GET /orders/external/{id}, on Alice Blue in the order book); a timeout before
    the order reached the broker and a 429 leave the exit owed, sent once when the child can trade;
    an expired session moves only that child to needs_login; an order rejected after accept shows
    REJECTED in the broker's book as the engine reads it. The money rules hold after every step and
    every child is flat after the master (teardown)."""
    monkeypatch.setattr(f"{__name__}.event", lambda *args, **kwargs: None)
    monkeypatch.setattr(f"{__name__}.note", lambda *args, **kwargs: None)
    dhan, alice = MIXED_DHAN[0], MIXED_ALICE[0]
    by_tag = "GET /v2/orders/external/{id}"

    def settle(state: MoneyMachine, ticks: int = 3) -> None:
        state.all_clear()
        for _ in range(ticks):
            state.tick()
            state.no_child_order_twice()
            state.no_naked_hedge_sell_leg()

    with _mixed_desk(faults, monkeypatch) as (desk, sims):
        state = type("MixedMachine", (MoneyMachine,), {"desk": desk, "faults": faults})()
        try:
            # A timeout after the broker took the entry: found by tag, never sent again.
            state.one_shot_fault(children={dhan, alice}, kind="place_then_unknown")
            state.master_market(symbol=FUT, side="BUY", lots=2)
            state.tick()
            assert not faults.place_then_unknown
            for name in (dhan, alice):
                assert _mapping_of(name).status == MappingStatus.UNKNOWN, name
            asked_before = sims.dhan.hit_count(client_id=dhan, route=by_tag)
            book_before = sims.dhan.hit_count(client_id=dhan, route="GET /v2/orders")
            alice_book_before = sims.alice.hit_count(user_id=alice, route="orders/book")
            settle(state)
            assert sims.dhan.hit_count(client_id=dhan, route=by_tag) > asked_before
            assert sims.dhan.hit_count(client_id=dhan, route="GET /v2/orders") == book_before
            assert sims.alice.hit_count(user_id=alice, route="orders/book") > alice_book_before
            for name in (dhan, alice):
                entry = _mapping_of(name)
                assert entry.status == MappingStatus.FILLED, name
                assert PaperOrder.objects.filter(account__user_id=name, tag=entry.tag).count() == 1, name
                assert _held_lots(name) == 1, name

            # The exit: Dhan's times out before it reaches Dhan, Alice Blue answers 429.
            state.one_shot_fault(children={dhan}, kind="unknown_not_placed")
            state.one_shot_fault(children={alice}, kind="rate_limited_once")
            state.master_exit(symbol=FUT, part=1)
            state.tick()
            assert not faults.unknown_not_placed and not faults.rate_limited_once
            settle(state)
            for name in (dhan, alice):
                assert _held_lots(name) == 0, name

            # Sessions expire: only those two children need a login; the entry is not chased.
            state.expire_tokens(children={dhan, alice})
            state.master_market(symbol=FUT, side="BUY", lots=2)
            state.tick()
            for name in NAMES:
                status = Account.objects.get(broker_user_id=name).status
                expected = AccountStatus.NEEDS_LOGIN if name in (dhan, alice) else AccountStatus.ACTIVE
                assert status == expected, name
            settle(state)
            state.master_exit(symbol=FUT, part=1)
            settle(state)

            # Rejected after accept: REJECTED in each broker's book, read back through its adapter.
            state.one_shot_fault(children={dhan, alice}, kind="reject_after_accept")
            state.master_market(symbol=FUT, side="BUY", lots=2)
            state.tick()
            assert not faults.reject_after_accept
            settle(state)
            for name in (dhan, alice):
                rejected = PaperOrder.objects.filter(
                    account__user_id=name,
                    status=OrderStatus.REJECTED,
                    status_message__contains="after accept",
                )
                assert rejected.count() == 1, name
                assert _mapping_of(name, tag=rejected.get().tag).status == MappingStatus.REJECTED, name
                assert _held_lots(name) == 0, name
            assert {user for user, _tag in faults.places} >= {dhan, alice}
        finally:
            state.teardown()
