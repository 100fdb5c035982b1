"""The convergence stage (DESIGN §3.7): every child's replicated position converges to its entitlement.

Each tick looks at the entitlement rows not yet settled (a row is unsettled from the moment an
allocation moves it until H equals E with nothing in flight) and, every `CONVERGE_SWEEP_SECONDS`,
at every row still holding something. For each:
- nothing owed and nothing in flight: settled;
- an exit owed and the child can trade (the send gate): a MARKET exit intent of a convergence
  allocation (`kind converge`, one per instrument and side each tick), committed before it is
  sent like every intent; counted as in flight from then on, so never sent twice;
- an exit owed and the child cannot trade: held back, its reason recorded once per change;
- after a failed attempt the next one waits (`OWED_EXIT_BACKOFF`: 2 s, 5 s, 15 s, 30 s, then 60 s).
Entries are never chased: a child below its entitlement gets nothing here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, Role
from brokers.types import OrderType, Side
from replication.allocation import IntentRow, exit_price, exit_slices, intent_row
from replication.clients import ClientCache
from replication.entitlement import (
    NO_HOLDING,
    OWED,
    Instrument,
    entitled,
    holdings,
    owed_exit,
    resting_exit_ids,
)
from replication.gate import Action, ChildSwitches, Switches, Verdict, child_switches, decide, in_dry_run
from replication.lease import Lease, lease_check
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    Entitlement,
    MappingStatus,
    OrderMapping,
    ReplicationEvent,
)
from replication.pending import RetryGate
from replication.services.allocations import allocation_owed_create
from replication.services.audit_log import EventKind, audit_row
from replication.services.intents import exits_owed_record

DRY_SETTLED = "dry_run_settled"
ENTITLEMENT_FIELDS = (
    "quantity",
    "held",
    "settled",
    "hold_code",
    "hold_reason",
    "owed_since",
    "attempts",
    "next_attempt_at",
    "updated_at",
)


@dataclass(slots=True)
class ConvergeReport:
    checked: int = 0
    settled: int = 0
    owed: int = 0  # exits owed after this pass (sent now, held back or waiting)
    intents: int = 0  # owed-exit intents committed now
    held: int = 0


def backoff(attempts: int) -> timedelta:
    steps = settings.OWED_EXIT_BACKOFF or (0,)
    return timedelta(seconds=steps[min(max(attempts, 1), len(steps)) - 1])


@dataclass(frozen=True, slots=True)
class InstrumentMeta:
    """What an owed exit needs of its instrument, from the latest allocation that traded it."""

    master_id: int
    lot_size: int
    freeze_quantity: int | None
    validity: str


def _instrument_meta(instruments: set[Instrument]) -> dict[Instrument, InstrumentMeta]:
    meta: dict[Instrument, InstrumentMeta] = {}
    for ex, sym, prod in instruments:
        row = (
            Allocation.objects.filter(exchange=ex, tradingsymbol=sym, product=prod, lot_size__gt=0)
            .order_by("-pk")
            .values_list("master_id", "lot_size", "freeze_quantity", "validity")
            .first()
        )
        if row is not None:
            meta[(ex, sym, prod)] = InstrumentMeta(*row)
    return meta


def converge(
    *,
    lease: Lease,
    tick_id: int | None,
    clients: ClientCache | None = None,
    now: datetime | None = None,
    sweep: bool = False,
) -> ConvergeReport:
    """One pass of the convergence stage; commits owed-exit intents for the dispatcher to send."""
    now = now or timezone.now()
    report = ConvergeReport()
    # Rows settled under dry-run are looked at every tick: their dry runs stood in for orders, so
    # once the child is live again what it really holds may still be owed.
    rows_q = Q(settled=False) | Q(hold_code=DRY_SETTLED)
    if sweep:
        rows_q |= ~Q(quantity=0) | ~Q(held=0)
    rows = list(Entitlement.objects.filter(rows_q).order_by("pk"))
    if not rows:
        return report
    report.checked = len(rows)
    instruments = {(r.exchange, r.tradingsymbol, r.product) for r in rows}
    child_ids = sorted({r.child_id for r in rows})
    # One read of the switches: a child in dry run counts its dry runs both in E and in what it
    # holds, so a switch thrown meanwhile cannot leave E counting them and H not.
    engine = Switches.read()
    switches = child_switches(child_ids)
    no_account = ChildSwitches(0, "", Role.MASTER)
    dry_children = {c for c in child_ids if in_dry_run(engine, switches.get(c) or no_account)}
    entitled_now = entitled(instruments, children=child_ids, dry_run=dry_children)
    entitled_filled = entitled(instruments, children=child_ids, in_flight=False, dry_run=dry_children)
    held_now = holdings(instruments, children=child_ids)
    meta = _instrument_meta(instruments)
    changed: list[Entitlement] = []
    events: list[ReplicationEvent] = []  # built by audit_row, written by audit_rows
    owed_orders: dict[tuple[Instrument, str], list[tuple[Entitlement, int, Verdict]]] = defaultdict(list)
    for row in rows:
        key = (row.child_id, row.exchange, row.tradingsymbol, row.product)
        inst = key[1:]
        e = entitled_now.get(key, 0)
        h = held_now.get(key, NO_HOLDING)
        sw = switches.get(row.child_id) or ChildSwitches(row.child_id, "", Role.MASTER)
        verdict = decide(Action.EXIT, engine, sw)
        # What is owed is judged against what filled: an entry still working (resting far from
        # the market, or never to fill) neither delays the exit of what is held nor nets with it.
        # A child in dry run is entitled by its dry runs (E) and holds them (H), halted or not.
        dry = row.child_id in dry_children
        owed = owed_exit(entitled_filled.get(key, 0), h, dry_run=dry, made=True)
        row.quantity, row.held = e, h.held
        if owed is None:
            if not h.pending:
                row.settled, row.attempts, row.next_attempt_at = True, 0, None
                report.settled += 1
            else:  # what is in flight may still leave H beyond E once it fills: followed until then
                row.settled = False
            row.hold_code, row.hold_reason, row.owed_since = "", "", None
            if dry:
                row.hold_code, row.hold_reason = DRY_SETTLED, "settled by dry runs: checked again when live"
            changed.append(row)
            continue
        report.owed += 1
        side, quantity = owed
        row.owed_since = row.owed_since or now
        # Owed means not settled, whatever settled it before (a dry run that stood in for the
        # exit, then a halt): the row is looked at every tick until the exit is done.
        row.settled = False
        if not verdict.send and not verdict.dry_run:
            report.held += 1
            if row.hold_code != verdict.code:
                events.append(
                    audit_row(
                        kind=EventKind.EXIT_HELD,
                        account_id=row.child_id,
                        message=f"exit of {quantity} {row.exchange}:{row.tradingsymbol} {row.product} owed "
                        f"(entitled {e}, holds {h.held}) but held back: {verdict.reason}",
                        data={"code": verdict.code, "side": side, "quantity": quantity, "entitled": e},
                    )
                )
            row.hold_code, row.hold_reason = verdict.code, verdict.reason
            changed.append(row)
            continue
        if row.next_attempt_at is not None and now < row.next_attempt_at:
            changed.append(row)
            continue
        if inst not in meta:  # never traded by an allocation: nothing to size an order from
            row.hold_code, row.hold_reason = "no_instrument", "no allocation ever traded this instrument"
            changed.append(row)
            continue
        row.hold_code, row.hold_reason = "", ""
        owed_orders[(inst, side)].append((row, quantity, verdict))
        changed.append(row)
    # Per-order caps split an owed exit (never reduce it): the children's limits, and the price its
    # order value is judged at, read before the transaction (a quote is a broker call).
    owing = {row.child_id for items in owed_orders.values() for row, _, _ in items}
    limits = {
        a.pk: a
        for a in Account.objects.filter(pk__in=owing).only(
            "max_lots_per_order", "max_quantity", "max_order_value"
        )
    }
    prices: dict[Instrument, Decimal | None] = {}
    for inst, _side in owed_orders:
        if inst not in prices and any(
            limits[row.child_id].max_order_value is not None for row, _, _ in owed_orders[(inst, _side)]
        ):
            probe = Allocation(
                master_id=meta[inst].master_id, exchange=inst[0], tradingsymbol=inst[1], product=inst[2]
            )
            prices[inst] = exit_price(probe, clients or ClientCache())
    intents: list[IntentRow] = []
    with transaction.atomic():
        lease_check(lease)
        for (inst, side), items in sorted(owed_orders.items()):
            info = meta[inst]
            lot, freeze = max(info.lot_size, 1), info.freeze_quantity
            alloc = allocation_owed_create(
                allocation=Allocation(
                    master_id=info.master_id,
                    tick_id=tick_id,
                    group_key=f"t{tick_id}o" if tick_id else f"owed-{now:%Y%m%d%H%M%S%f}",
                    kind=AllocationKind.CONVERGE,
                    status=AllocationStatus.PLANNED,
                    sized=True,
                    exchange=inst[0],
                    tradingsymbol=inst[1],
                    product=inst[2],
                    side=side,
                    order_type=OrderType.MARKET,
                    validity=info.validity,
                    master_quantity=sum(q for _, q, _ in items),
                    lot_size=lot,
                    freeze_quantity=freeze,
                    margin_source=OWED,
                    reason="exits owed: replicated position above entitlement (DESIGN §3.7)",
                    master_seen_at=now,
                )
            )
            for row, quantity, verdict in items:
                row.attempts += 1
                row.next_attempt_at = now + backoff(row.attempts)
                slices = exit_slices(quantity, lot, freeze, limits[row.child_id], prices.get(inst))
                for slice_no, qty in enumerate(slices):
                    intents.append(
                        intent_row(
                            alloc,
                            row.child_id,
                            slice_no=slice_no,
                            side=side,
                            lots=qty // lot,
                            quantity=qty,
                            status=MappingStatus.DRY_RUN if verdict.dry_run else MappingStatus.PLANNED,
                            reason_code="owed_exit",
                            reason=f"owed exit, attempt {row.attempts}: entitled {row.quantity}, "
                            f"holds {row.held}" + ("; dry run: not sent" if verdict.dry_run else ""),
                        )
                    )
                events.append(
                    audit_row(
                        kind=EventKind.EXIT_OWED_PLANNED,
                        account_id=row.child_id,
                        allocation_id=alloc.pk,
                        message=f"owed exit {side} {quantity} {inst[0]}:{inst[1]} {inst[2]} "
                        f"(entitled {row.quantity}, holds {row.held}), attempt {row.attempts}"
                        + (" — dry run" if verdict.dry_run else ""),
                        data={"side": side, "quantity": quantity, "attempt": row.attempts},
                    )
                )
        buys = {m.child_id for m in intents if m.side == Side.BUY}
        for m in intents:
            # Buy-to-close before sell-to-close for a child closing both ways: a hedge is never naked.
            m.wave = 1 if m.side == Side.SELL and m.child_id in buys else 0
            m.epoch = lease.epoch
        exits_owed_record(
            intents=intents, entitlements=changed, entitlement_fields=ENTITLEMENT_FIELDS, events=events
        )
    report.intents = sum(1 for m in intents if m.status == MappingStatus.PLANNED)
    return report


def sweep_due(last: float | None, now: float) -> bool:
    return last is None or now - last >= settings.CONVERGE_SWEEP_SECONDS


def stale_mirrors(*, now: datetime, retries: dict[int, tuple[int, datetime]]) -> list[OrderMapping]:
    """Child orders still resting at the broker although their master order was cancelled with
    nothing filled (the allocation's master quantity went to 0): their cancel was held back (the
    child could not trade) or failed. Returned for the cancel to be sent again once the child can
    trade (a held child adds no audit row per tick) and its backoff (`OWED_EXIT_BACKOFF`, counted
    in `retries`: mapping id -> attempts, next attempt) has passed. A stale mirror would otherwise
    stand in for an owed exit for ever (DESIGN §3.7)."""
    rows = list(
        OrderMapping.objects.filter(
            status=MappingStatus.OPEN,
            allocation__master_quantity=0,
            allocation__kind__in=(AllocationKind.OPEN, AllocationKind.CLOSE),
        )
        .exclude(broker_order_id="")
        .select_related("child")
    )
    if not rows:
        retries.clear()
        return []
    engine = Switches.read()
    switches = child_switches(sorted({m.child_id for m in rows}))
    due = []
    for m in rows:
        sw = switches.get(m.child_id)
        if sw is None or not decide(Action.CANCEL, engine, sw).send:
            continue
        attempts, next_at = retries.get(m.pk, (0, now))
        if now < next_at:
            continue
        retries[m.pk] = (attempts + 1, now + backoff(attempts + 1))
        due.append(m)
    return due


Change = tuple[OrderMapping, dict[str, int]]


def resting_copies_beyond_held(*, retry: RetryGate) -> tuple[list[OrderMapping], list[Change]]:
    """Children's copies of master exits still resting there (a stop-loss, a target) larger than
    what the child holds once its exits working now are done: cut to what it holds, in whole
    lots, or cancelled where nothing is left (returned as cancels and quantity changes).
    A copy beyond the position is an order past zero: the master booked part of its position at
    MARKET and kept its stop-loss on the whole, the child exited its share at once, and its copy
    of the stop-loss would now take it short when it triggers (DESIGN §3.7: exits never past
    zero). Each copy is judged alone: a stop-loss and a target are alternatives, each may close
    the whole position. Only children the send gate lets modify now; a refused change is tried
    again after the pause of `retry` (2 s in the engine)."""
    rows = list(
        OrderMapping.objects.filter(status=MappingStatus.OPEN, allocation__kind=AllocationKind.CLOSE)
        .exclude(order_type=OrderType.MARKET)
        .exclude(broker_order_id="")
        .select_related("child", "allocation")
        .order_by("pk")
    )
    resting = resting_exit_ids({m.allocation_id: m.allocation.master_quantity for m in rows})
    rows = [m for m in rows if m.allocation_id in resting and m.quantity > m.filled_quantity]
    if not rows:
        return [], []
    keys = {(m.child_id, m.exchange, m.tradingsymbol, m.product) for m in rows}
    held = holdings({k[1:] for k in keys}, children=sorted({k[0] for k in keys}))
    engine = Switches.read()
    switches = child_switches(sorted({m.child_id for m in rows}))
    cancels: list[OrderMapping] = []
    changes: list[Change] = []
    for m in rows:
        h = held.get((m.child_id, m.exchange, m.tradingsymbol, m.product), NO_HOLDING)
        if m.side == Side.SELL:
            room = max(h.held - (h.exit_sell - h.resting_sell), 0)
        else:
            room = max(-h.held - (h.exit_buy - h.resting_buy), 0)
        lot = max(m.allocation.lot_size, 1)
        keep = room // lot * lot  # what is left of the copy, in whole lots
        sw = switches.get(m.child_id)
        if m.quantity - m.filled_quantity <= keep or sw is None or not decide(Action.MODIFY, engine, sw).send:
            continue
        if not retry.take([m.pk]):
            continue
        if keep == 0:
            cancels.append(m)
        else:
            changes.append((m, {"quantity": m.filled_quantity + keep}))
    return cancels, changes
