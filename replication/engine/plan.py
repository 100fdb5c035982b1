"""Stage: plan allocations — a fraction of capital for the opening group, an exit ratio for
each close (DESIGN §3.3, §3.4). Sizing's rules are `replication.sizing`'s; this stage gathers
their inputs (instruments, the master's ΔU and capital, the calculator's figures)."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from brokers.errors import BrokerError
from brokers.types import Instrument, InstrumentKey, InstrumentType
from replication.engine.calculator import calculator_reads, read_together
from replication.engine.context import TickContext
from replication.engine.types import Detected, EventPlan, MasterRead, Prefetched
from replication.events import MasterEvent
from replication.models import Allocation, MarginSnapshot
from replication.services.audit_log import EventKind, audit
from replication.sizing import Leg, MarginSource, paise_shares, plan_group, ratio, rupees

logger = logging.getLogger(__name__)

PREV_SNAPSHOT_MAX_AGE = timedelta(seconds=300)  # older: no margin reading from just before the tick

Opening = tuple[int, MasterEvent, int, int | None]  # (index in the plans, event, lots, freeze qty)

DERIVATIVES = (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)
UNDERLYING_MAX_LENGTH = int(Allocation._meta.get_field("underlying").max_length or 32)


def underlying_of(inst: Instrument | None) -> str:
    """What an instrument filter entry may name for every contract on it: the broker's underlying,
    else a derivative's name (Kite's CSV: NIFTY for every NIFTY future and option), else the
    symbol itself (an equity's name is the company's); "" when the instrument is unknown."""
    if inst is None:
        return ""
    name = inst.underlying or (inst.name if inst.instrument_type in DERIVATIVES else "") or inst.tradingsymbol
    return name.strip().upper()[:UNDERLYING_MAX_LENGTH]


def plan_allocations(ctx: TickContext, read: MasterRead, detected: Detected) -> list[EventPlan | None]:
    """The allocation decision per event (None: the event is skipped, with its reason)."""
    if not detected.events:
        return []
    # No earlier snapshot (first deploy, a new master): the funds just read, stored this tick.
    # A snapshot from long before this tick (a new master's from its time as a child, the
    # engine back after a gap) is no "before" either: ΔU across it is not this tick's.
    prev = read.prev
    if prev is not None and detected.now - prev.taken_at > PREV_SNAPSHOT_MAX_AGE:
        prev = None
    funds_now = (
        MarginSnapshot.objects.filter(account=read.master, tick=ctx.tick).order_by("-id").first()
        if prev is None
        else None
    )
    plans: list[EventPlan | None] = []
    opening: list[Opening] = []
    for i, ev in enumerate(detected.events):
        inst = ctx.instruments.get(read.client, InstrumentKey(ev.exchange, ev.tradingsymbol))
        if inst is None or inst.lot_size <= 0:
            why = "unknown instrument" if inst is None else "missing lot size"
            ctx.error(f"{ev.exchange}:{ev.tradingsymbol}: {why}; not replicated")
            audit(
                kind=EventKind.EVENT_SKIPPED,
                account=read.master,
                message=f"master {ev.side} {ev.quantity} {ev.exchange}:{ev.tradingsymbol}: {why}; "
                "nothing placed",
                data={"order_ids": ev.order_ids, "reason": why},
            )
            plans.append(None)
            continue
        if ev.quantity % inst.lot_size:
            why = f"quantity {ev.quantity} is not a whole number of lots of {inst.lot_size}"
            ctx.error(f"{ev.exchange}:{ev.tradingsymbol}: {why}")
            audit(
                kind=EventKind.EVENT_SKIPPED,
                account=read.master,
                message=why,
                data={"order_ids": ev.order_ids},
            )
            plans.append(None)
            continue
        lots = ev.quantity // inst.lot_size
        plan = EventPlan(
            lot_size=inst.lot_size,
            master_lots=lots,
            freeze_quantity=inst.freeze_quantity,
            underlying=underlying_of(inst),
        )
        if ev.kind == "close":
            r = Decimal(ev.quantity) / Decimal(abs(ev.position_before))
            plan.exit_ratio = ratio(min(r, Decimal(1)))
            plan.unit_lots = 1
            plan.reference_price = ev.price
            plan.reason = "master flat: children exit everything" if ev.master_flat_after else ""
        else:
            opening.append((i, ev, lots, inst.freeze_quantity))
        plans.append(plan)
    if opening:
        _plan_opening_group(ctx, read, plans, opening, prev, detected.prefetched, funds_now)
    return plans


def _plan_opening_group(
    ctx: TickContext,
    read: MasterRead,
    plans: list[EventPlan | None],
    opening: list[Opening],
    prev: MarginSnapshot | None,
    prefetched: Prefetched | None,
    funds_now: MarginSnapshot | None,
) -> None:
    asked, reads = calculator_reads(read.client, [ev for _, ev, _, _ in opening])
    if prefetched is not None and prefetched[0] == asked:
        answers = prefetched[1]
    else:
        answers = read_together(ctx.pool, reads)
    margins = answers.get("margins")
    if margins is None:
        estimates = [Decimal("0")] * len(asked.requests)
        logger.info("no order-margin calculator at %s: the group is sized on ΔU alone", read.master.broker)
    elif isinstance(margins, BrokerError):
        estimates = [Decimal("0")] * len(asked.requests)
        ctx.error(f"order-margin calculator unavailable: {margins}")
    else:
        estimates = [e.total for e in margins]
    group_estimate: Decimal | None = None
    basket = answers.get("basket")
    if isinstance(basket, BrokerError):
        ctx.error(f"basket-margin calculator unavailable: {basket}")
    elif basket is not None:
        group_estimate = basket.total
    prices: dict[InstrumentKey, Decimal] = {}
    ltp = answers.get("ltp")
    if isinstance(ltp, BrokerError):
        ctx.error(f"LTP unavailable for order-value caps: {ltp}")
    elif ltp is not None:
        prices = ltp
    legs = []
    for (i, ev, lots, freeze), est in zip(opening, estimates, strict=True):
        plan = plans[i]
        assert plan is not None  # every opening event has a plan until the group is refused
        price = ev.price or prices.get(InstrumentKey(ev.exchange, ev.tradingsymbol), Decimal("0"))
        legs.append(
            Leg(
                ev.exchange,
                ev.tradingsymbol,
                ev.product,
                ev.side.value,
                lots,
                plan.lot_size,
                price,
                order_margin=est,
                freeze_quantity=freeze,
                underlying=underlying_of(
                    ctx.instruments.get(read.client, InstrumentKey(ev.exchange, ev.tradingsymbol))
                ),
            )
        )
    used_now = read.funds.used
    if prev is not None:
        capital = prev.capital if prev.capital > 0 else used_now + prev.available_margin
        delta_u = used_now - prev.used_margin
    elif funds_now is not None:
        # First look (first deploy, a new master, events seen late): no ΔU across the tick, so
        # the calculator's figure is the margin, and the master's capital is the funds just
        # read, U + A (margin moves from A to U as the order fills; the sum does not).
        capital, delta_u = funds_now.capital, Decimal("0")
    else:
        ctx.error("opening group not sized: no reading of the master's capital")
        for i, _, _, _ in opening:
            plans[i] = None
        return
    try:
        group = plan_group(legs=legs, master_capital=capital, delta_u=delta_u, group_estimate=group_estimate)
    except ValueError as exc:
        ctx.error(f"opening group not sized: {exc}")
        for i, _, _, _ in opening:
            plans[i] = None
        return
    attribution = group.attribution
    for (i, _, _, _), leg, leg_margin, unit in zip(
        opening, legs, paise_shares(attribution.leg_margins), group.unit_lots, strict=True
    ):
        plan = plans[i]
        assert plan is not None  # set above for every opening event
        plan.master_capital = capital
        plan.attributed_margin = leg_margin
        plan.reference_price = leg.price
        plan.margin_source = attribution.source.value
        plan.fraction = ratio(group.fraction)
        plan.unit_lots = unit
        plan.reason = (
            ""
            if attribution.source != MarginSource.CALCULATOR
            else attribution.reason
            if prev is not None
            else "first look at this master (no snapshot of its margins from just before): "
            f"the calculator's {rupees(attribution.group_margin)}, capital {rupees(capital)}"
        )
