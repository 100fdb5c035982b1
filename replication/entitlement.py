"""Entitlement and convergence (DESIGN §3.7): what each child should hold, and what it still owes.

The entitled quantity E of a child in one instrument is not stored as a running sum that a lost
update could corrupt: it is replayed from the records, in allocation order, each time it is needed:
- an entry adds the child's orders of that allocation that filled or are still in flight (planned,
  sending, unknown, open, or a dry run while the child is still in dry run); what was rejected,
  failed or cancelled unfilled adds nothing (entries are never chased), nor does what a dry run
  since lifted planned (it was never sent: an entry not made); once the master's own orders of
  the entry have all ended, a child is entitled to at most its share of what the master filled
  (`entry_cap`): a mirror that filled after the master cancelled unfilled entitles nothing;
- an exit applies the exit rule (§3.4) to E: `E ← E − round(r × E lots)`, halves up; r comes from
  the allocation as it is now (a master exit cancelled unfilled gives its entitlement back); a
  resting exit that filled after later events is applied where it filled, against the master's
  position then (`Allocation.replay_after`, set by `allocations_retime_exits`, and moved after
  the allocations of the same tick's orders that filled before it by
  `allocations_replay_after_new`);
- a master flat there sets E = 0 for every child, so the replay starts at the last such exit.
Allocations staff rejected before sending, corrective orders and owed exits do not move E; a
staff flatten sets the flattened child's E to zero there.

The replicated position H is what the engine's own orders filled (§3.4). An exit is owed while H
is beyond E with no exit working to close the gap (`owed_exit`): sent when the child can trade,
never twice (what is in flight counts), and held back with a recorded reason when it cannot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db.models import Q, Sum

from brokers.types import OrderStatus, OrderType, Side
from replication.gate import Switches, child_switches, in_dry_run
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
)
from replication.sizing import plan_exit, size_exit

Instrument = tuple[str, str, str]  # exchange, tradingsymbol, product
Key = tuple[int, str, str, str]  # child id, exchange, tradingsymbol, product

FINAL_ORDER_STATUSES = frozenset(s.value for s in OrderStatus if s.is_final)
IN_FLIGHT = frozenset(
    {MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN, MappingStatus.OPEN}
)
# `Allocation.margin_source` of staff corrective orders: they bring the broker back to H and are
# not part of it. Owed exits converge H to E and do not move E.
CORRECTIVE = "corrective"
FLATTEN = "flatten"
OWED = "owed"
NOT_ENTITLING = (CORRECTIVE, OWED)
# Flatten allocations (replication.services.child_flatten) are told apart by their group key: a
# flatten sets the entitlement of the flattened child to zero there (staff decided it holds nothing).
FLATTEN_GROUP = "flatten-"


def entry_contribution(status: str, quantity: int, filled: int, *, in_flight: bool = True) -> int:
    """How much of one entry order counts toward E (unsigned); with `in_flight=False` an order
    still working counts only what it filled (the E an owed exit is judged against)."""
    if status == MappingStatus.SKIPPED:
        return 0
    if status in IN_FLIGHT and not in_flight:
        return filled
    if status in IN_FLIGHT or status == MappingStatus.DRY_RUN:
        return max(quantity, filled)
    return filled  # FILLED, or final with only what filled (rejected, failed, cancelled)


def entry_cap(planned: int, lot_size: int, *, master_ordered: int, master_filled: int) -> int:
    """The most an entry entitles a child to once the master's orders of it ended (unsigned).

    The child's planned quantity scaled by the share of the master's orders that filled, in whole
    lots, halves up (§3.4); the whole plan when the master filled everything.
    """
    if master_ordered <= 0 or master_filled >= master_ordered:
        return planned
    lot = max(lot_size, 1)
    lots = planned // lot
    return (2 * lots * master_filled + master_ordered) // (2 * master_ordered) * lot


def _master_share(entry_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(ordered, filled) of the master's orders of each entry whose master orders have all ended."""
    links = Allocation.master_orders.through.objects.filter(allocation_id__in=list(entry_ids))
    ordered: dict[int, int] = defaultdict(int)
    filled: dict[int, int] = defaultdict(int)
    live: set[int] = set()
    for alloc_id, status, quantity, done in links.values_list(
        "allocation_id", "masterorder__status", "masterorder__quantity", "masterorder__filled_quantity"
    ):
        if status not in FINAL_ORDER_STATUSES:
            live.add(alloc_id)
        ordered[alloc_id] += quantity
        filled[alloc_id] += done
    return {a: (ordered[a], filled[a]) for a in ordered if a not in live}


def master_exit_filled(close_ids: Sequence[int]) -> dict[int, int]:
    """What the master's orders of each exit have filled in its direction (a netted allocation
    links orders of both sides), for the exits linked to master orders. An order that crossed zero
    fills its closing part first, so the caller caps this at the allocation's quantity."""
    if not close_ids:
        return {}
    links = Allocation.master_orders.through.objects.filter(allocation_id__in=list(close_ids))
    filled: dict[int, int] = defaultdict(int)
    for alloc_id, alloc_side, side, done in links.values_list(
        "allocation_id", "allocation__side", "masterorder__side", "masterorder__filled_quantity"
    ):
        filled[alloc_id] += done if side == alloc_side else -done
    return {a: max(q, 0) for a, q in filled.items()}


def exit_resting(allocation: Allocation) -> bool:
    """Whether the master's order of this exit still rests there, not (fully) filled: a stop-loss
    or a target whose copies wait with it. An exit linked to no master order is not resting."""
    return bool(resting_exit_ids({allocation.pk: allocation.master_quantity}))


def _in_dry_run(children: set[int]) -> set[int]:
    """Those of `children` in dry run now (`gate.in_dry_run`: their own switch or the engine's)."""
    if not children:
        return set()
    engine = Switches.read()
    if engine.dry_run:
        return set(children)
    return {pk for pk, switches in child_switches(children).items() if in_dry_run(engine, switches)}


@dataclass(frozen=True, slots=True)
class Step:
    """One allocation as the replay needs it."""

    pk: int
    kind: str
    side: str
    master_quantity: int
    master_position_before: int
    lot_size: int

    @property
    def master_flat(self) -> bool:
        before = abs(self.master_position_before)
        return self.kind == AllocationKind.CLOSE and before > 0 and self.master_quantity >= before


def apply_exit(entitled: int, step: Step) -> int:
    """E after one master exit: the §3.4 rule on E's lots (halves up); flat → 0."""
    closes_long = step.side == Side.SELL
    if entitled == 0 or (closes_long and entitled < 0) or (not closes_long and entitled > 0):
        return entitled
    if step.master_flat:
        return 0
    before = abs(step.master_position_before)
    if before == 0 or step.master_quantity <= 0:
        return entitled
    plan = plan_exit(closing_quantity=step.master_quantity, master_position_before=before)
    result = size_exit(plan, child_id=0, held_quantity=abs(entitled), lot_size=max(step.lot_size, 1))
    sign = 1 if entitled > 0 else -1
    return sign * (abs(entitled) - result.quantity)


def _instrument_q(instruments: Iterable[Instrument]) -> Q:
    q = Q()
    for ex, sym, prod in set(instruments):
        q |= Q(exchange=ex, tradingsymbol=sym, product=prod)
    return q


STEP_FIELDS = ("pk", "kind", "side", "master_quantity", "master_position_before", "lot_size")


def entitled(
    instruments: Iterable[Instrument],
    *,
    children: Sequence[int] | None = None,
    upto: int | None = None,
    in_flight: bool = True,
    resting_exits: bool | None = None,
    dry_run: set[int] | None = None,
) -> dict[Key, int]:
    """E per (child, instrument) for these instruments, replayed up to allocation `upto` (inclusive).

    `in_flight=False`: entries still working count only what they filled, and so do the master's
    exits (a stop-loss or a target resting at the master has done nothing yet). An owed exit is
    judged against that E: a resting entry may never fill, and the exit of what is already held
    must not wait for it (or be netted against it); a resting master exit must not be front-run
    (a child whose entry was still in flight when the exit was sized has no resting mirror of it,
    and follows once the master's exit fills). `resting_exits` (default: as `in_flight`) decides
    the master's exits alone: False with entries in flight is the E an exit the master has made
    is sized against (a stop-loss still resting takes nothing away before it fills; the last
    allocation of the prefix, the exit being sized, counts in full). `dry_run`: the children in
    dry run, as the caller read the switches (read here when None): a caller that compares E with
    what a child holds counts the child's dry runs on both sides from the same read. Keys with
    E = 0 may be missing.
    """
    instruments = list(set(instruments))
    if not instruments:
        return {}
    qs = (
        Allocation.objects.filter(_instrument_q(instruments))
        .filter(kind__in=(AllocationKind.OPEN, AllocationKind.CLOSE))
        .exclude(status=AllocationStatus.REJECTED)
        .exclude(margin_source__in=NOT_ENTITLING)
        .order_by("pk")
    )
    if upto is not None:
        qs = qs.filter(pk__lte=upto)
    steps: dict[Instrument, list[Step]] = defaultdict(list)
    at: dict[int, tuple[int, int, int]] = {}  # where each step is replayed (a retimed one: after)
    open_parts: dict[int, int] = {}  # retimed open part of a zero crossing -> quantity sized for
    for row in qs.values_list(
        "exchange", "tradingsymbol", "product", "group_key", "replay_after", "master_lots", *STEP_FIELDS
    ):
        step = Step(*row[6:])
        if row[3].startswith(FLATTEN_GROUP):
            step = Step(step.pk, FLATTEN, *row[8:])
        replay_after = row[4]
        if replay_after is not None and upto is not None and replay_after > upto:
            continue  # a resting exit that filled after `upto`: not part of that prefix
        if replay_after is not None and step.kind == AllocationKind.OPEN and row[5]:
            open_parts[step.pk] = row[5] * max(step.lot_size, 1)
        at[step.pk] = (step.pk, 0, step.pk) if replay_after is None else (replay_after, 1, step.pk)
        steps[(row[0], row[1], row[2])].append(step)
    if not (in_flight if resting_exits is None else resting_exits):
        # A master exit still resting counts only what it filled (but the exit being sized).
        done = master_exit_filled(
            [s.pk for seq in steps.values() for s in seq if s.kind == AllocationKind.CLOSE and s.pk != upto]
        )
        for seq in steps.values():
            seq[:] = [
                replace(s, master_quantity=done[s.pk])
                if s.pk in done and done[s.pk] < s.master_quantity
                else s
                for s in seq
            ]
    for seq in steps.values():  # a resting exit is replayed where it filled (§3.4: r at its fill)
        seq.sort(key=lambda s: at[s.pk])
    # A master flat sets everyone to zero: replay from the last one.
    window: dict[Instrument, list[Step]] = {}
    for inst, seq in steps.items():
        start = 0
        for i, step in enumerate(seq):
            if step.master_flat:
                start = i + 1
        window[inst] = seq[start:]
    entry_ids = [s.pk for seq in window.values() for s in seq if s.kind in (AllocationKind.OPEN, FLATTEN)]
    contributions: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    if entry_ids:
        planned: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        mappings = OrderMapping.objects.filter(allocation_id__in=entry_ids)
        if children is not None:
            mappings = mappings.filter(child_id__in=list(children))
        rows = list(
            mappings.values_list("allocation_id", "child_id", "status", "side", "quantity", "filled_quantity")
        )
        dry_now = (
            dry_run
            if dry_run is not None
            else _in_dry_run({row[1] for row in rows if row[2] == MappingStatus.DRY_RUN})
        )
        for alloc_id, child_id, status, side, quantity, filled in rows:
            if status == MappingStatus.DRY_RUN and child_id not in dry_now:
                continue  # a dry run since lifted: what it planned was never sent, an entry not made
            sign = 1 if side == Side.BUY else -1
            contributions[alloc_id][child_id] += sign * entry_contribution(
                status, quantity, filled, in_flight=in_flight
            )
            if status != MappingStatus.SKIPPED:
                planned[alloc_id][child_id] += sign * quantity
        lot_sizes = {s.pk: s.lot_size for seq in window.values() for s in seq}
        for alloc_id, (ordered, filled) in _master_share(entry_ids).items():
            for child_id, q in contributions.get(alloc_id, {}).items():
                cap = entry_cap(
                    abs(planned[alloc_id][child_id]),
                    lot_sizes[alloc_id],
                    master_ordered=ordered,
                    master_filled=filled,
                )
                if abs(q) > cap:
                    contributions[alloc_id][child_id] = cap if q > 0 else -cap
        # The open part of an order that crossed zero, split again where it filled: its children
        # are entitled to the share of what it opened at the master (nothing if it only closed).
        quantities = {s.pk: s.master_quantity for seq in window.values() for s in seq}
        for alloc_id, sized_for in open_parts.items():
            if alloc_id not in quantities or quantities[alloc_id] >= sized_for:
                continue
            for child_id, q in contributions.get(alloc_id, {}).items():
                cap = entry_cap(
                    abs(planned[alloc_id][child_id]),
                    lot_sizes[alloc_id],
                    master_ordered=sized_for,
                    master_filled=quantities[alloc_id],
                )
                if abs(q) > cap:
                    contributions[alloc_id][child_id] = cap if q > 0 else -cap
    out: dict[Key, int] = {}
    for (ex, sym, prod), seq in window.items():
        e: dict[int, int] = defaultdict(int)
        for step in seq:
            if step.kind == AllocationKind.OPEN:
                for child_id, q in contributions.get(step.pk, {}).items():
                    e[child_id] += q
            elif step.kind == FLATTEN:  # staff flattened these children here: entitled to nothing
                for child_id in contributions.get(step.pk, {}):
                    e[child_id] = 0
            else:
                for child_id in list(e):
                    e[child_id] = apply_exit(e[child_id], step)
        for child_id, q in e.items():
            if q:
                out[(child_id, ex, sym, prod)] = q
    return out


@dataclass(frozen=True, slots=True)
class Holding:
    """H and what is working, for one child and instrument (engine orders; corrective ones excluded)."""

    held: int = 0  # filled buys − filled sells
    pending_buy: int = 0  # unfilled remainder of buy orders in flight
    pending_sell: int = 0
    dry: int = 0  # signed quantity of dry-run orders (what a dry-run child would hold on top)
    # Of the pending, what exits (not entries) have working: an entry resting in the direction of
    # an owed exit is no exit (it may never fill; E already counts it).
    exit_buy: int = 0
    exit_sell: int = 0
    # Of those exits, copies of a master exit still resting there (a stop-loss, a target): they
    # work only if the master's does; an exit the master has made is owed whatever they do.
    resting_buy: int = 0
    resting_sell: int = 0

    @property
    def pending(self) -> bool:
        return bool(self.pending_buy or self.pending_sell)


NO_HOLDING = Holding()


def holdings(
    instruments: Iterable[Instrument] | None = None, *, children: Sequence[int] | None = None
) -> dict[Key, Holding]:
    """H, the orders in flight and the dry-run quantity per (child, instrument)."""
    qs = OrderMapping.objects.filter(quantity__gt=0).exclude(allocation__margin_source=CORRECTIVE)
    if instruments is not None:
        instruments = list(set(instruments))
        if not instruments:
            return {}
        qs = qs.filter(_instrument_q(instruments))
    if children is not None:
        qs = qs.filter(child_id__in=list(children))
    rows = list(
        qs.values(
            "child_id",
            "exchange",
            "tradingsymbol",
            "product",
            "side",
            "status",
            "allocation__kind",
            "allocation_id",
            "allocation__master_quantity",
            "order_type",
        ).annotate(filled=Sum("filled_quantity"), qty=Sum("quantity"))
    )
    resting = _resting_exits(rows)
    acc: dict[Key, list[int]] = defaultdict(lambda: [0] * 8)
    for r in rows:
        key = (r["child_id"], r["exchange"], r["tradingsymbol"], r["product"])
        sign = 1 if r["side"] == Side.BUY else -1
        filled, qty = r["filled"] or 0, r["qty"] or 0
        acc[key][0] += sign * filled
        if r["status"] in IN_FLIGHT:
            acc[key][1 if sign > 0 else 2] += max(qty - filled, 0)
            if r["allocation__kind"] != AllocationKind.OPEN:
                acc[key][4 if sign > 0 else 5] += max(qty - filled, 0)
                if r["allocation_id"] in resting and r["order_type"] != OrderType.MARKET:
                    acc[key][6 if sign > 0 else 7] += max(qty - filled, 0)
        elif r["status"] == MappingStatus.DRY_RUN:
            acc[key][3] += sign * qty
    return {k: Holding(*v) for k, v in acc.items()}


def _resting_exits(rows: list[dict[str, Any]]) -> set[int]:
    """The master exits, among these holdings rows' allocations with copies in flight, that have
    not filled at the master yet (in full)."""
    wanted = {
        r["allocation_id"]: r["allocation__master_quantity"]
        for r in rows
        if r["status"] in IN_FLIGHT and r["allocation__kind"] == AllocationKind.CLOSE
    }
    return resting_exit_ids(wanted)


def resting_exit_ids(master_quantities: dict[int, int]) -> set[int]:
    """Of these exits (allocation id -> master quantity), those whose master order still rests,
    not (fully) filled."""
    done = master_exit_filled(list(master_quantities))
    return {pk for pk, quantity in master_quantities.items() if pk in done and done[pk] < quantity}


def owed_exit(
    entitled_quantity: int, holding: Holding, *, dry_run: bool = False, made: bool = False
) -> tuple[str, int] | None:
    """The exit owed now: (side, quantity) that brings H toward E (never past zero), less what exits
    already have working in that direction (a resting entry is no exit); None when nothing is owed.
    `made`: E counts only the exits the master has made (filled), so copies of its exits still
    resting are not counted as working either (they fill only with the master's). A dry-run child
    counts its dry runs as held, so dry runs show the exits they would send."""
    held = holding.held + (holding.dry if dry_run else 0)
    if held > 0:
        working = holding.exit_sell - (holding.resting_sell if made else 0)
        quantity = held - working - max(entitled_quantity, 0)
        return (Side.SELL, quantity) if quantity > 0 else None
    if held < 0:
        working = holding.exit_buy - (holding.resting_buy if made else 0)
        quantity = -held - working - max(-entitled_quantity, 0)
        return (Side.BUY, quantity) if quantity > 0 else None
    return None
