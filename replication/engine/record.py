"""Stage: record — the master's orders, its positions and the allocations its events cause,
in one transaction (a restart sees the orders as known *and* finds the allocations, unsized)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from brokers.types import OrderType
from replication.engine.context import TickContext
from replication.engine.types import Detected, EventPlan, MasterRead
from replication.events import MasterEvent
from replication.lease import lease_check
from replication.models import Allocation, AllocationKind, AllocationStatus, MasterOrder
from replication.services.allocations import (
    allocation_create,
    allocations_follow_exit_fills,
    allocations_replay_after_new,
    allocations_retime_exits,
)
from replication.services.audit_log import EventKind, audit
from replication.services.master_orders import master_orders_record, master_positions_store


def record_allocations(
    ctx: TickContext, read: MasterRead, detected: Detected, plans: list[EventPlan | None]
) -> int:
    """Record the master's orders and positions and one allocation per planned event; returns
    how many allocations were made."""
    master, diff, now, mode = read.master, detected.diff, detected.now, ctx.mode
    max_age = timedelta(seconds=settings.MAX_EVENT_AGE)
    made = 0
    with transaction.atomic():
        lease_check(ctx.lease)
        master_orders_record(master=master, diff=diff, now=now)
        allocations_retime_exits(master_id=master.pk, fill_before=detected.fill_before)
        allocations_follow_exit_fills(master_id=master.pk, order_ids=[o.order_id for o, _ in diff.fills])
        if detected.positions_after is not None:  # with the orders whose fills moved it, or not at all
            master_positions_store(
                master=master,
                after=detected.positions_after,
                stored=detected.existing or {},
                touch=not detected.stored_positions,
            )
        orders_by_id = {
            mo.broker_order_id: mo
            for mo in MasterOrder.objects.filter(
                account=master, broker_order_id__in=[oid for ev in detected.events for oid in ev.order_ids]
            )
        }
        for o in diff.rejected:
            audit(
                kind=EventKind.MASTER_ORDER_REJECTED,
                account=master,
                master_order=orders_by_id.get(o.order_id),
                message=f"master order {o.order_id} was rejected ({o.status_message[:200]}); "
                "recorded, not copied",
            )
        group_key = f"t{ctx.tick.pk}"
        for ev, plan in zip(detected.events, plans, strict=True):
            if plan is None:
                continue
            age = (now - ev.placed_at) if ev.placed_at else timedelta(0)
            status = AllocationStatus.PLANNED
            hold_reason = ""
            if ctx.control.approval_mode:
                status, hold_reason = AllocationStatus.AWAITING_APPROVAL, "approval mode is on"
            elif age > max_age:
                status = AllocationStatus.AWAITING_APPROVAL
                hold_reason = (
                    f"seen {int(age.total_seconds())} s after it was placed "
                    f"(MAX_EVENT_AGE {int(max_age.total_seconds())} s)"
                )
            alloc = _allocation(ctx, ev, plan, group_key, status, hold_reason, now=now, mode=mode, read=read)
            allocation_create(
                allocation=alloc,
                master_orders=[orders_by_id[oid] for oid in ev.order_ids if oid in orders_by_id],
                kind=EventKind.ALLOCATION_CREATED
                if status == AllocationStatus.PLANNED
                else EventKind.ALLOCATION_HELD,
                message=_describe(alloc) + (f" — held: {hold_reason}" if hold_reason else ""),
                data={
                    "fraction": str(alloc.fraction) if alloc.fraction is not None else None,
                    "exit_ratio": str(alloc.exit_ratio) if alloc.exit_ratio is not None else None,
                    "margin_source": alloc.margin_source,
                },
            )
            made += 1
        # A resting order retimed above that filled after this tick's new orders: after them.
        allocations_replay_after_new(master_id=master.pk, new_fills_before=detected.new_fills_before)
    return made


def _allocation(
    ctx: TickContext,
    ev: MasterEvent,
    plan: EventPlan,
    group_key: str,
    status: str,
    hold_reason: str,
    *,
    now: datetime,
    mode: str,
    read: MasterRead,
) -> Allocation:
    by_order = mode == "order"
    return Allocation(
        master=read.master,
        tick=ctx.tick,
        group_key=group_key if ev.kind == "open" else f"{group_key}c",
        kind=AllocationKind.OPEN if ev.kind == "open" else AllocationKind.CLOSE,
        status=status,
        exchange=ev.exchange,
        tradingsymbol=ev.tradingsymbol,
        product=ev.product,
        side=ev.side.value,
        order_type=ev.order_type.value if by_order else OrderType.MARKET.value,
        validity=ev.validity,
        price=ev.price if by_order else Decimal("0"),
        trigger_price=ev.trigger_price if by_order else Decimal("0"),
        master_quantity=ev.quantity,
        master_position_before=ev.position_before,
        master_seen_at=now,
        reason="; ".join(x for x in (plan.reason, hold_reason) if x),
        lot_size=plan.lot_size,
        master_lots=plan.master_lots,
        freeze_quantity=plan.freeze_quantity,
        unit_lots=plan.unit_lots,
        reference_price=plan.reference_price,
        exit_ratio=plan.exit_ratio,
        master_capital=plan.master_capital,
        attributed_margin=plan.attributed_margin,
        margin_source=plan.margin_source,
        fraction=plan.fraction,
        underlying=plan.underlying,
    )


def _describe(a: Allocation) -> str:
    what = f"{a.kind} {a.side} {a.master_quantity} {a.exchange}:{a.tradingsymbol} ({a.master_lots} lots)"
    if a.kind == AllocationKind.OPEN and a.fraction is not None:
        return (
            f"{what}: fraction {a.fraction:.6f} of capital, margin {a.attributed_margin} "
            f"via {a.margin_source}"
        )
    if a.exit_ratio is not None:
        return f"{what}: exit ratio {a.exit_ratio:.6f}"
    return what
