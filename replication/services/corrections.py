"""Corrective orders: bring a child's broker position back to what the engine replicated.

The plan reads the child's broker (positions, LTP, instruments) and writes nothing; the service
commits one sized allocation and one PLANNED intent per slice with its audit row. The next tick
sends them; no broker write happens here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from brokers.base import BrokerClient
from brokers.types import Side
from replication.allocation.intents import make_tag
from replication.allocation.positions import CORRECTIVE, replicated_positions
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
from replication.services._planning import CorrectionError
from replication.services.audit_log import audit
from replication.sizing import rupees

__all__ = ["CorrectionError", "CorrectionPlan", "correction_plan", "reconciliation_correct"]


@dataclass(frozen=True, slots=True)
class CorrectionPlan:
    """What a corrective order would send now: the confirmation page shows exactly this."""

    child: Account
    exchange: str
    tradingsymbol: str
    product: str
    expected: int  # the replicated position (what the engine's filled orders put there)
    actual: int  # the broker's position
    side: str
    quantity: int  # what is sent: the drift, less what the child's caps do not allow
    lot_size: int
    dry_run: bool
    drift: int  # |expected − actual|
    slices: tuple[int, ...]  # one order each: within the freeze quantity and max lots per order
    freeze_quantity: int | None
    price: Decimal | None  # the LTP the order value was checked at (None: no value cap)
    cap_note: str  # why `quantity` is below the drift ("" when it is not)

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == Side.BUY else -self.quantity

    @property
    def instrument(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def lots(self) -> int:
        return self.quantity // self.lot_size

    @property
    def remaining(self) -> int:
        """Drift left after this order fills (signed like the drift): > 0 when a cap bit."""
        left = self.drift - self.quantity
        return left if self.side == Side.BUY else -left


@dataclass(frozen=True, slots=True)
class _Capped:
    quantity: int
    largest_order: int | None  # units per order allowed by max lots per order (None: no cap)
    price: Decimal | None
    note: str


def _corrective_caps(
    child: Account, client: BrokerClient, exchange: str, tradingsymbol: str, drift: int, lot_size: int
) -> _Capped:
    """The child's caps applied to a corrective MARKET order of `drift` units (whole lots).

    Max quantity and max order value (quantity × LTP) cap the total; max lots per order only sets
    the largest slice. Raises CorrectionError when a cap allows less than one lot.
    """
    quantity = drift
    bits: list[str] = []
    if child.max_quantity is not None:
        allowed = child.max_quantity // lot_size * lot_size
        if allowed < quantity:
            quantity = allowed
            bits.append(f"max quantity {child.max_quantity}")
    price: Decimal | None = None
    if child.max_order_value is not None:
        price = P.child_ltp(child, client, exchange, tradingsymbol)
        allowed = int(child.max_order_value // (price * lot_size)) * lot_size
        if allowed < quantity:
            quantity = allowed
            bits.append(f"max order value {rupees(child.max_order_value)} at LTP {rupees(price)}")
    if child.max_lots_per_order is not None and child.max_lots_per_order < 1:
        quantity = 0
        bits.append(f"max {child.max_lots_per_order} lots per order")
    if quantity <= 0:
        raise CorrectionError(
            f"{P.child_name(child)}'s {' and '.join(bits)} allow less than one lot of {lot_size}: "
            "no corrective order"
        )
    note = ""
    if bits:
        note = (
            f"{quantity} of the {drift} drift, capped by {' and '.join(bits)}; "
            f"{drift - quantity} stay to correct once it fills"
        )
    largest = None if child.max_lots_per_order is None else child.max_lots_per_order * lot_size
    return _Capped(quantity, largest, price, note)


def correction_plan(
    *, child: Account, exchange: str, tradingsymbol: str, product: str, clients: ClientCache | None = None
) -> CorrectionPlan:
    """The corrective order for one child and instrument: side and quantity of expected − actual,
    capped by the child's caps and sliced at the freeze quantity (and max lots per order).

    Reads the child's broker positions (and LTP when it has a max order value); writes nothing.
    Raises CorrectionError when there is nothing to correct, orders are still working there, a cap
    allows less than one lot, or the child cannot trade.
    """
    P.check_child_can_trade(child)
    held = replicated_positions(
        exchange=exchange, tradingsymbol=tradingsymbol, product=product, children=[child.pk]
    )
    expected = held.get((child.pk, exchange, tradingsymbol, product), (0, 0, 0))[0]
    client = P.child_client(child, clients)
    actual = P.child_broker_positions(child, client).get((exchange, tradingsymbol, product), 0)
    working = P.working_tags(child, exchange, tradingsymbol, product)
    if working:
        raise CorrectionError(
            f"orders are still working in {exchange}:{tradingsymbol} for this child "
            f"({', '.join(working[:5])}); wait for them to settle"
        )
    drift = expected - actual
    if drift == 0:
        raise CorrectionError(f"{exchange}:{tradingsymbol} {product}: no drift (both {actual})")
    lot_size = P.lot_sizes([(exchange, tradingsymbol)])[(exchange, tradingsymbol)]
    capped = _corrective_caps(child, client, exchange, tradingsymbol, abs(drift), lot_size)
    freeze = P.freeze_quantities(client, [(exchange, tradingsymbol)])[(exchange, tradingsymbol)]
    return CorrectionPlan(
        child=child,
        exchange=exchange,
        tradingsymbol=tradingsymbol,
        product=product,
        expected=expected,
        actual=actual,
        side=Side.BUY if drift > 0 else Side.SELL,
        quantity=capped.quantity,
        lot_size=lot_size,
        dry_run=P.child_dry_run(child),
        drift=abs(drift),
        slices=P.whole_lot_slices(capped.quantity, lot_size, P.smallest_limit(freeze, capped.largest_order)),
        freeze_quantity=freeze,
        price=capped.price,
        cap_note=capped.note,
    )


def reconciliation_correct(
    *,
    child: Account,
    exchange: str,
    tradingsymbol: str,
    product: str,
    actor: str,
    confirmed_quantity: int | None = None,
    clients: ClientCache | None = None,
) -> OrderMapping:
    """Plan the corrective order that brings the child's broker position back to expected.

    One allocation (sized, margin_source "corrective", kind open or close by direction) and one
    PLANNED intent per slice (see `correction_plan`), committed with an audit row; the next tick
    sends them. Returns the first slice (all share `mapping.allocation`). The corrective order is
    not part of the replicated position (see `allocation.positions.CORRECTIVE`), so once it fills
    expected == actual. `confirmed_quantity` (signed, as shown on the confirmation page) refuses the
    order when the order changed since the page was shown (the drift, or what the caps allow).
    """
    plan = correction_plan(
        child=child, exchange=exchange, tradingsymbol=tradingsymbol, product=product, clients=clients
    )
    if confirmed_quantity is not None and confirmed_quantity != plan.signed_quantity:
        raise CorrectionError(
            f"the order changed since the confirmation page ({confirmed_quantity:+d} shown, "
            f"{plan.signed_quantity:+d} now: the drift moved or the child's caps allow another "
            "quantity); review it again"
        )
    master = P.current_master()
    now = timezone.now()
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=child.pk)
        P.check_child_can_trade(locked)
        if P.working_tags(locked, exchange, tradingsymbol, product):
            raise CorrectionError(f"an order in {exchange}:{tradingsymbol} was planned meanwhile; review it")
        reason = (
            f"corrective order by {actor}: expected {plan.expected}, actual {plan.actual}, "
            f"{plan.side} {plan.quantity}"
        )
        if len(plan.slices) > 1:
            reason += f" in {len(plan.slices)} orders ({'+'.join(map(str, plan.slices))})"
        if plan.cap_note:
            reason += f"; {plan.cap_note}"
        alloc = Allocation.objects.create(
            master=master,
            group_key=f"fix-{child.pk}-{now:%Y%m%d%H%M%S%f}",
            kind=AllocationKind.OPEN if abs(plan.expected) > abs(plan.actual) else AllocationKind.CLOSE,
            status=AllocationStatus.PLANNED,
            sized=True,
            exchange=exchange,
            tradingsymbol=tradingsymbol,
            product=product,
            side=plan.side,
            reference_price=plan.price or Decimal(0),
            master_quantity=plan.quantity,
            lot_size=plan.lot_size,
            freeze_quantity=plan.freeze_quantity,
            master_lots=plan.quantity // plan.lot_size,
            margin_source=CORRECTIVE,
            reason=reason,
            master_seen_at=now,
            decided_by=actor,
            decided_at=now,
        )
        mappings = [
            OrderMapping.objects.create(
                allocation=alloc,
                child=locked,
                slice_no=slice_no,
                tag=make_tag(alloc.pk, locked.pk, slice_no),
                status=MappingStatus.DRY_RUN if plan.dry_run else MappingStatus.PLANNED,
                exchange=exchange,
                tradingsymbol=tradingsymbol,
                product=product,
                side=plan.side,
                lots=quantity // plan.lot_size,
                quantity=quantity,
                reason_code=CORRECTIVE,
                reason=f"{reason}" + ("; dry run: not sent" if plan.dry_run else ""),
                finished_at=now if plan.dry_run else None,
            )
            for slice_no, quantity in enumerate(plan.slices)
        ]
        data: dict[str, object] = {
            "expected": plan.expected,
            "actual": plan.actual,
            "side": plan.side,
            "quantity": plan.quantity,
            "dry_run": plan.dry_run,
        }
        if len(plan.slices) > 1:
            data["slices"] = list(plan.slices)
        if plan.cap_note:
            data["capped"] = {"drift": plan.drift, "note": plan.cap_note, "ltp": str(plan.price or "")}
        audit(
            kind=EventKind.CORRECTIVE_ORDER_PLANNED,
            actor=actor,
            account=locked,
            allocation=alloc,
            mapping=mappings[0],
            message=f"{', '.join(m.tag for m in mappings)}: {plan.side} {plan.quantity} {plan.instrument} "
            f"{product} (expected {plan.expected}, actual {plan.actual})"
            + (f" in {len(mappings)} orders" if len(mappings) > 1 else "")
            + (f"; {plan.cap_note}" if plan.cap_note else "")
            + (" — dry run" if plan.dry_run else ""),
            data=data,
        )
    return mappings[0]
