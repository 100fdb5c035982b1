"""Flattening a child: close everything the engine holds for it, in freeze-quantity slices.

A flatten is an exit: the child's caps never reduce it (DESIGN §3.3 step 7), it is only sliced.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from brokers.types import Side
from replication.allocation.intents import make_tag
from replication.allocation.positions import replicated_positions
from replication.clients import ClientCache
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    EventKind,
    MappingStatus,
    OrderMapping,
)
from replication.services import _planning as P
from replication.services._common import clean_staff_reason
from replication.services._planning import CorrectionError
from replication.services.audit_log import audit


@dataclass(frozen=True, slots=True)
class FlattenLeg:
    exchange: str
    tradingsymbol: str
    product: str
    held: int  # replicated position
    actual: int  # broker position
    side: str
    quantity: int  # what will be sent (0: nothing to close at the broker)
    lot_size: int
    note: str = ""
    slices: tuple[int, ...] = ()  # one order each, within the freeze quantity
    freeze_quantity: int | None = None


@dataclass(frozen=True, slots=True)
class FlattenPlan:
    child: Account
    legs: tuple[FlattenLeg, ...]
    dry_run: bool

    @property
    def orders(self) -> tuple[FlattenLeg, ...]:
        return tuple(leg for leg in self.legs if leg.quantity > 0)


def flatten_plan(*, child: Account, clients: ClientCache | None = None) -> FlattenPlan:
    """Closing orders for every instrument where the child has a replicated position (read-only).

    Each closes the replicated position less exits already working, never more than the broker
    shows the child holding on that side (a flatten never turns a position around), in slices
    within the freeze quantity. The child's caps do not reduce it: exits continue.
    """
    P.check_child_can_trade(child)
    held = {
        (ex, sym, prod): v
        for (_cid, ex, sym, prod), v in replicated_positions(children=[child.pk]).items()
        if v[0] != 0
    }
    if not held:
        return FlattenPlan(child=child, legs=(), dry_run=P.child_dry_run(child))
    client = P.child_client(child, clients)
    actual = P.child_broker_positions(child, client)
    instruments = [(ex, sym) for ex, sym, _ in held]
    lots = P.lot_sizes(instruments)
    freezes = P.freeze_quantities(client, instruments)
    legs = []
    for (ex, sym, prod), (position, pending_buy, pending_sell) in sorted(held.items()):
        side = Side.SELL if position > 0 else Side.BUY
        working_exit = pending_sell if position > 0 else pending_buy
        broker = actual.get((ex, sym, prod), 0)
        broker_same_side = max(0, broker if position > 0 else -broker)
        quantity = max(0, min(abs(position) - working_exit, broker_same_side))
        notes = []
        if working_exit:
            notes.append(f"{working_exit} already being closed")
        if broker_same_side < abs(position) - working_exit:
            notes = [f"the broker shows {broker}: closing only what is there"]
        slices = P.whole_lot_slices(quantity, lots[(ex, sym)], freezes[(ex, sym)])
        if len(slices) > 1:
            notes.append(f"in {len(slices)} orders of at most {max(slices)} (freeze {freezes[(ex, sym)]})")
        legs.append(
            FlattenLeg(
                ex,
                sym,
                prod,
                held=position,
                actual=broker,
                side=side,
                quantity=quantity,
                lot_size=lots[(ex, sym)],
                note="; ".join(notes),
                slices=slices,
                freeze_quantity=freezes[(ex, sym)],
            )
        )
    return FlattenPlan(child=child, legs=tuple(legs), dry_run=P.child_dry_run(child))


def child_flatten(
    *, child: Account, actor: str, reason: str, clients: ClientCache | None = None
) -> list[OrderMapping]:
    """Plan closing orders for everything the engine holds for this child (see `flatten_plan`).

    One closing allocation per instrument (exit ratio 1, one group: buy-to-close legs go before
    sell-to-close legs, so a hedge is never left naked), one PLANNED intent per slice, and the
    child's entries not yet sent withdrawn; all in one transaction with audit rows. The next tick
    sends them.
    """
    if not reason.strip():
        raise CorrectionError("a reason is required to flatten a child")
    reason = clean_staff_reason(reason, refused=CorrectionError)
    plan = flatten_plan(child=child, clients=clients)
    if not plan.orders:
        raise CorrectionError(
            f"nothing to flatten for {P.child_name(child)}: "
            "no replicated position that the broker still shows"
        )
    master = P.current_master()
    now = timezone.now()
    group_key = f"flatten-{child.pk}-{now:%Y%m%d%H%M%S%f}"
    has_buy = any(leg.side == Side.BUY for leg in plan.orders)
    created: list[OrderMapping] = []
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=child.pk)
        P.check_child_can_trade(locked)
        withdrawn = OrderMapping.objects.filter(
            child=locked, status=MappingStatus.PLANNED, allocation__kind=AllocationKind.OPEN
        ).update(
            status=MappingStatus.CANCELLED,
            reason=f"withdrawn: child flattened by {actor}",
            reason_code="flattened",
            finished_at=now,
        )
        for leg in plan.orders:
            alloc = Allocation.objects.create(
                master=master,
                group_key=group_key,
                kind=AllocationKind.CLOSE,
                status=AllocationStatus.PLANNED,
                sized=True,
                exchange=leg.exchange,
                tradingsymbol=leg.tradingsymbol,
                product=leg.product,
                side=leg.side,
                master_quantity=leg.quantity,
                lot_size=leg.lot_size,
                freeze_quantity=leg.freeze_quantity,
                master_lots=leg.quantity // leg.lot_size,
                master_position_before=leg.held,
                exit_ratio=1,
                reason=f"flatten by {actor}: {reason}",
                master_seen_at=now,
                decided_by=actor,
                decided_at=now,
            )
            created.extend(
                OrderMapping.objects.create(
                    allocation=alloc,
                    child=locked,
                    slice_no=slice_no,
                    wave=1 if has_buy and leg.side == Side.SELL else 0,
                    tag=make_tag(alloc.pk, locked.pk, slice_no),
                    status=MappingStatus.DRY_RUN if plan.dry_run else MappingStatus.PLANNED,
                    exchange=leg.exchange,
                    tradingsymbol=leg.tradingsymbol,
                    product=leg.product,
                    side=leg.side,
                    lots=quantity // leg.lot_size,
                    quantity=quantity,
                    reason_code="flatten",
                    reason=f"flatten by {actor}: {reason}" + ("; dry run: not sent" if plan.dry_run else ""),
                    finished_at=now if plan.dry_run else None,
                )
                for slice_no, quantity in enumerate(leg.slices)
            )
        audit(
            kind=EventKind.CHILD_FLATTENED,
            actor=actor,
            account=locked,
            message=f"flatten by {actor}: {reason} — "
            + ", ".join(f"{m.side} {m.quantity} {m.exchange}:{m.tradingsymbol}" for m in created)
            + (" (dry run)" if plan.dry_run else ""),
            data={
                "reason": reason,
                "orders": [
                    {"tag": m.tag, "side": m.side, "quantity": m.quantity, "instrument": m.tradingsymbol}
                    for m in created
                ],
                "skipped": [
                    {"instrument": leg.tradingsymbol, "held": leg.held, "actual": leg.actual}
                    for leg in plan.legs
                    if leg.quantity == 0
                ],
                "withdrawn_entries": withdrawn,
                "dry_run": plan.dry_run,
            },
        )
    return created
