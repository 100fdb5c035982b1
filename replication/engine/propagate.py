"""Stage: propagate the master's modifications and cancellations to the child orders they
caused (DESIGN §3.5), and make open mirrors of filled master orders MARKET when policy says so."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounts.models import Account
from brokers.types import Order, OrderStatus, OrderType
from replication import allocation
from replication.clients import CHILD_SECRETS
from replication.engine.context import TickContext
from replication.events import BookDiff
from replication.models import Allocation, AllocationKind, MappingStatus, OrderMapping
from replication.pending import exit_mirrors_owed_as_market, mirrors_due_for_market
from replication.services.allocations import allocation_resize
from replication.services.intents import intent_rewrite, intents_withdraw

Change = tuple[OrderMapping, dict[str, Any]]


def propagate_changes(ctx: TickContext, master: Account, diff: BookDiff) -> None:
    changed_ids = [m.order.order_id for m in diff.modified] + [o.order_id for o, _ in diff.cancelled]
    allocs = list(
        Allocation.objects.filter(master=master, master_orders__broker_order_id__in=changed_ids)
        .prefetch_related("master_orders")
        .distinct()
    )
    if not allocs:
        return
    book = {m.order.order_id: m.order for m in diff.modified}
    book.update({o.order_id: o for o, _ in diff.cancelled})
    mappings = list(
        OrderMapping.objects.filter(
            allocation__in=allocs, status__in=(MappingStatus.OPEN, MappingStatus.PLANNED)
        )
        .select_related("child", "allocation")
        .defer(*CHILD_SECRETS)
    )
    by_alloc: dict[int, list[OrderMapping]] = defaultdict(list)
    for m in mappings:
        by_alloc[m.allocation_id].append(m)
    rows = allocation.child_rows({m.child_id for m in mappings})
    to_cancel: list[OrderMapping] = []
    to_withdraw: list[OrderMapping] = []
    to_modify: list[Change] = []
    closing_part = _closing_parts(allocs)
    for alloc in allocs:
        linked = list(alloc.master_orders.all())
        new_total = _new_total(alloc, linked, book, closing_part.get(alloc.pk, 0))
        lead = next((book[mo.broker_order_id] for mo in linked if mo.broker_order_id in book), None)
        for m in by_alloc.get(alloc.pk, []):
            lots = m.lots
            if new_total != alloc.master_quantity and alloc.master_quantity:
                lots = (m.lots * new_total) // alloc.master_quantity
                if lots > m.lots:
                    # An exit grows through the entitlement (the convergence stage sends what
                    # is owed, never more than held); an entry grows only within the child's caps.
                    lots = (
                        m.lots
                        if alloc.kind != AllocationKind.OPEN
                        else capped_lots(lots, m, alloc, rows.get(m.child_id), lead)
                    )
            new_qty = lots * alloc.lot_size if m.slice_no == 0 else m.quantity
            if new_total == 0 or new_qty <= m.filled_quantity:
                (to_cancel if m.status == MappingStatus.OPEN else to_withdraw).append(m)
                continue
            kwargs = _follow(m, lead, new_qty)
            if not kwargs:
                continue
            if m.status == MappingStatus.OPEN:
                to_modify.append((m, kwargs))
            else:
                intent_rewrite(mapping=m, changes=kwargs)
        if new_total != alloc.master_quantity:
            allocation_resize(allocation=alloc, master_quantity=new_total)
    intents_withdraw(
        to_withdraw,
        lease=ctx.lease,
        reason="master order cancelled before it was sent",
        reason_code="master_cancelled",
        why="master order cancelled",
    )
    if to_modify:
        ctx.sender.modify_open(to_modify, reason="master order modified")
    if to_cancel:
        ctx.sender.cancel_open(to_cancel, reason="master order cancelled")


def convert_filled_mirrors(ctx: TickContext) -> int:
    """DESIGN §3.5, policy `market_after_seconds`, and §3.7, exit mirrors owed in full after the
    master's exit filled, whatever the policy: see `replication.pending`."""
    owed = exit_mirrors_owed_as_market()
    owed_ids = {m.pk for m in owed}
    due = [m for m, _ in mirrors_due_for_market(now=timezone.now()) if m.pk not in owed_ids]
    sent = 0
    for mirrors, reason in (
        (owed, "master's exit filled and nothing is entitled there; open exit converted to MARKET"),
        (due, "master order filled; open mirror converted to MARKET (policy market_after_seconds)"),
    ):
        allowed = ctx.state.market_retry.take([m.pk for m in mirrors])
        changes: list[Change] = [(m, {"order_type": OrderType.MARKET}) for m in mirrors if m.pk in allowed]
        if changes:
            sent += ctx.sender.modify_open(changes, reason=reason)
    return sent


def _new_total(alloc: Allocation, linked: list[Any], book: dict[str, Order], closing: int) -> int:
    """What the linked master orders now ask for, in the allocation's direction (a netted
    allocation links orders of both sides; a cancelled order counts only what filled, also one
    cancelled in an earlier tick: its stored row, not its original quantity)."""
    new_total = 0
    for mo in linked:
        o = book.get(mo.broker_order_id)
        if o is None:
            quantity = mo.filled_quantity if OrderStatus(mo.status).is_final else mo.quantity
        elif o.status.is_final:
            quantity = o.filled_quantity
        else:
            quantity = o.quantity
        new_total += quantity if mo.side == alloc.side else -quantity
    # An order that crossed zero feeds two allocations: the close takes up to the position
    # it closes, the open only the rest (never the whole order each).
    if alloc.kind == AllocationKind.CLOSE and alloc.master_position_before:
        new_total = min(new_total, abs(alloc.master_position_before))
    elif alloc.kind == AllocationKind.OPEN:
        new_total -= closing
    return max(new_total, 0)


def _follow(m: OrderMapping, lead: Order | None, new_qty: int) -> dict[str, Any]:
    """The changes that make the child's order follow the master's."""
    kwargs: dict[str, Any] = {}
    # The master made its order MARKET (LIMIT or SL -> MARKET, SL -> SL-M), perhaps
    # filling at once: the child's order follows, whether the master's is open or done.
    to_type = None
    if lead is not None and lead.order_type != m.order_type:
        if lead.order_type == OrderType.MARKET and m.order_type != OrderType.MARKET:
            to_type = OrderType.MARKET
        elif lead.order_type == OrderType.SLM and m.order_type == OrderType.SL:
            to_type = OrderType.SLM
    if to_type is not None:
        kwargs["order_type"] = to_type
    child_type = to_type or m.order_type
    if lead is not None and (lead.status.is_open or to_type is not None):
        if lead.price != m.price and child_type in (OrderType.LIMIT, OrderType.SL):
            kwargs["price"] = lead.price
        if lead.trigger_price != m.trigger_price and child_type in (OrderType.SL, OrderType.SLM):
            kwargs["trigger_price"] = lead.trigger_price
    if new_qty != m.quantity:
        kwargs["quantity"] = new_qty
    return kwargs


def capped_lots(
    lots: int, m: OrderMapping, alloc: Allocation, child: allocation.ChildRow | None, lead: Order | None
) -> int:
    """A scaled-up entry within the child's caps (DESIGN §3.3 step 7) and its available margin:
    the extra lots must fit the margin the child has free, at the master's margin per lot."""
    if child is None:
        return m.lots  # not an eligible child any more: never grown
    lot = max(alloc.lot_size, 1)
    limit = lots
    if child.max_lots_per_order is not None:
        limit = min(limit, child.max_lots_per_order)
    if child.max_quantity is not None:
        limit = min(limit, child.max_quantity // lot)
    price = (lead.price if lead is not None and lead.price else None) or alloc.reference_price or alloc.price
    if child.max_order_value is not None and price:
        limit = min(limit, int(child.max_order_value // (price * lot)))
    # The stored plan's figure (`LegPlan.margin_per_lot`), never recomputed here; a row without a
    # margin figure (or not sized by the rules) has none and is capped by the limits alone.
    per_lot = alloc.sizing_plan().margin_per_lot if alloc.attributed_margin and alloc.master_lots else None
    if per_lot is not None:
        available = child.snap_available or Decimal(0)
        limit = min(limit, m.lots + int(max(available, Decimal(0)) // per_lot))
    return max(min(limit, lots), min(m.lots, lots))


def _closing_parts(allocs: list[Allocation]) -> dict[int, int]:
    """For each opening allocation whose master orders also feed a closing one of the same side
    (an order that crossed zero), the quantity that went to closing: the position it closed."""
    closes_by_order: dict[int, dict[int, Allocation]] = defaultdict(dict)
    for a in allocs:
        if a.kind == AllocationKind.CLOSE:
            for mo in a.master_orders.all():
                closes_by_order[mo.pk][a.pk] = a
    parts: dict[int, int] = {}
    for a in allocs:
        if a.kind != AllocationKind.OPEN:
            continue
        closes = {
            c.pk: c
            for mo in a.master_orders.all()
            for c in closes_by_order[mo.pk].values()
            if c.side == a.side
        }
        if closes:
            parts[a.pk] = sum(abs(c.master_position_before) for c in closes.values())
    return parts
