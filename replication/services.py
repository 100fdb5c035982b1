"""Staff decisions: allocations held for approval, corrective orders, flattening a child.

Every change is audited in the transaction that makes it. Corrective and flatten orders are committed
as tagged intents (`OrderMapping` PLANNED) of a sized allocation of their own; the orchestrator's next
tick sends them like any other intent. No broker write happens here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from accounts.validation import AccountError, clean_reason
from brokers.base import BrokerClient
from brokers.errors import BrokerError
from brokers.types import InstrumentKey, Side
from replication.allocator import CORRECTIVE, PENDING, make_tag, replicated_positions
from replication.audit import audit
from replication.clients import ClientCache
from replication.controls import engine_control_get
from replication.instruments import with_freeze_quantity
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
)
from replication.sizing import rupees, slice_quantity

logger = logging.getLogger(__name__)


class AllocationDecisionError(ValueError):
    """The allocation is not waiting for a decision."""


def _reason(reason: str, *, refused: type[ValueError]) -> str:
    """A staff reason for the audit trail, checked as every reason is (`accounts.validation`)."""
    try:
        return clean_reason(reason)
    except AccountError as exc:
        raise refused(exc.message) from None


def allocation_approve(*, allocation: Allocation, actor: str) -> Allocation:
    """Release a held allocation: its committed intents are sent on the next tick."""
    with transaction.atomic():
        alloc = Allocation.objects.select_for_update().get(pk=allocation.pk)
        if alloc.status != AllocationStatus.AWAITING_APPROVAL:
            raise AllocationDecisionError(f"allocation {alloc.pk} is {alloc.status}, not awaiting approval")
        alloc.set_status(AllocationStatus.PLANNED)
        alloc.decided_by, alloc.decided_at = actor, timezone.now()
        alloc.save(update_fields=["status", "decided_by", "decided_at"])
        audit(
            kind="allocation_approved",
            actor=actor,
            allocation=alloc,
            account=alloc.master,
            message=f"allocation {alloc.pk} approved by {actor}",
        )
    return alloc


def allocation_reject(*, allocation: Allocation, actor: str, reason: str) -> Allocation:
    """Refuse a held allocation: its intents are withdrawn and never sent."""
    if not reason.strip():
        raise AllocationDecisionError("a reason is required to reject an allocation")
    reason = _reason(reason, refused=AllocationDecisionError)
    with transaction.atomic():
        alloc = Allocation.objects.select_for_update().get(pk=allocation.pk)
        if alloc.status != AllocationStatus.AWAITING_APPROVAL:
            raise AllocationDecisionError(f"allocation {alloc.pk} is {alloc.status}, not awaiting approval")
        alloc.set_status(AllocationStatus.REJECTED)
        alloc.decided_by, alloc.decided_at = actor, timezone.now()
        alloc.reason = (alloc.reason + f"; rejected: {reason}").strip("; ")
        alloc.save(update_fields=["status", "decided_by", "decided_at", "reason"])
        withdrawn = OrderMapping.objects.filter(allocation=alloc, status=MappingStatus.PLANNED).update(
            status=MappingStatus.CANCELLED,
            reason=f"allocation rejected by {actor}: {reason}"[:2000],
            reason_code="staff_rejected",
            finished_at=timezone.now(),
        )
        audit(
            kind="allocation_rejected",
            actor=actor,
            allocation=alloc,
            account=alloc.master,
            message=f"allocation {alloc.pk} rejected by {actor}: {reason}",
            data={"withdrawn": withdrawn},
        )
    return alloc


# --- Corrective orders and flattening (reconciliation) -------------------------------------------
#
# Both are sent as whole-lot slices no larger than the instrument's freeze quantity (one intent per
# slice, tags `make_tag(allocation, child, slice_no)`), so a large client is never rejected at the
# exchange. The freeze quantity is read from the child's broker instrument list with the
# configured FREEZE_QUANTITIES filled in (the engine's instrument source, current for the day);
# only when that read fails does the figure recorded on the latest allocation in the instrument
# stand in (it can be weeks old, and the exchange revises freeze quantities).
#
# A corrective order respects the child's caps: max lots per order makes more slices, max quantity
# and max order value (a MARKET order priced at the child's LTP) cap the total, and the plan says
# why. A flatten is an exit: caps never reduce it (DESIGN §3.3 step 7), it is only sliced.


class CorrectionError(ValueError):
    """A corrective order or a flatten that cannot be planned; the message says why."""


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


def _current_master() -> Account:
    master = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()
    if master is None:
        raise CorrectionError("no enabled master account: corrective orders are recorded against it")
    return master


def _check_child_can_trade(child: Account) -> None:
    if child.role != Role.CHILD:
        raise CorrectionError(f"{child} is not a child account")
    blocked: dict[str, str] = {
        AccountStatus.DISABLED: "is disabled",
        AccountStatus.HALTED: "is halted (nothing is sent); resume it first",
        AccountStatus.NEEDS_LOGIN: "needs a broker login first",
    }
    if child.status in blocked:
        raise CorrectionError(f"{_name(child)} {blocked[child.status]}")


def _name(child: Account) -> str:
    return child.display_name or child.broker_user_id or str(child.pk)


def _client(child: Account, clients: ClientCache | None) -> BrokerClient:
    try:
        return (clients or ClientCache()).get(child)
    except CredentialDecryptError as exc:
        raise CorrectionError(f"credentials of {_name(child)} cannot be read: {exc}") from exc


def _broker_positions(child: Account, client: BrokerClient) -> dict[tuple[str, str, str], int]:
    try:
        positions = client.positions()
    except BrokerError as exc:
        raise CorrectionError(f"positions of {_name(child)} unavailable: {exc}") from exc
    actual: dict[tuple[str, str, str], int] = {}
    for p in positions:
        key = (p.exchange, p.tradingsymbol, p.product.value)
        actual[key] = actual.get(key, 0) + p.quantity
    return actual


def _lot_sizes(instruments: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Lot size per instrument from the latest allocation that traded it (1 when none did)."""
    sizes: dict[tuple[str, str], int] = {}
    for exchange, symbol in set(instruments):
        lot = (
            Allocation.objects.filter(exchange=exchange, tradingsymbol=symbol, lot_size__gt=0)
            .order_by("-id")
            .values_list("lot_size", flat=True)
            .first()
        )
        sizes[(exchange, symbol)] = lot or 1
    return sizes


def _freeze_quantities(
    client: BrokerClient, instruments: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int | None]:
    """Freeze quantity per instrument (None: unknown, the order goes out whole).

    The child's broker instrument list, with the configured FREEZE_QUANTITIES for an underlying its
    broker gives none for (`replication.instruments`): today's figure, from the broker that
    enforces it. When the list cannot be read or does not have the instrument, the figure recorded
    on the latest allocation in that instrument.
    """
    wanted = set(instruments)
    found: dict[tuple[str, str], int | None] = {}
    try:
        listing = client.instruments()
    except BrokerError as exc:
        logger.warning("instrument list unavailable, freeze quantities from allocations: %s", exc)
        listing = []
    configured: dict[str, int] = getattr(settings, "FREEZE_QUANTITIES", {})
    for inst in listing:
        key = (inst.exchange, inst.tradingsymbol)
        if key in wanted:
            found[key] = with_freeze_quantity(inst, configured).freeze_quantity or None
    for exchange, symbol in wanted:
        if found.get((exchange, symbol)) is None:
            found[(exchange, symbol)] = (
                Allocation.objects.filter(
                    exchange=exchange, tradingsymbol=symbol, freeze_quantity__isnull=False
                )
                .order_by("-id")
                .values_list("freeze_quantity", flat=True)
                .first()
            ) or None
    return found


def _slices(quantity: int, lot_size: int, largest: int | None) -> tuple[int, ...]:
    try:
        return slice_quantity(quantity, lot_size, largest)
    except ValueError as exc:  # a freeze quantity below one lot: no order could ever pass
        raise CorrectionError(str(exc)) from exc


def _ltp(child: Account, client: BrokerClient, exchange: str, tradingsymbol: str) -> Decimal:
    key = InstrumentKey(exchange, tradingsymbol)
    try:
        price = client.ltp([key]).get(key)
    except BrokerError as exc:
        raise CorrectionError(
            f"LTP of {key} unavailable for {_name(child)} ({exc}): the order value cannot be checked "
            "against the child's max order value"
        ) from exc
    if price is None or price <= 0:
        raise CorrectionError(
            f"no LTP for {key}: the order value cannot be checked against the child's max order value"
        )
    return price


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
        price = _ltp(child, client, exchange, tradingsymbol)
        allowed = int(child.max_order_value // (price * lot_size)) * lot_size
        if allowed < quantity:
            quantity = allowed
            bits.append(f"max order value {rupees(child.max_order_value)} at LTP {rupees(price)}")
    if child.max_lots_per_order is not None and child.max_lots_per_order < 1:
        quantity = 0
        bits.append(f"max {child.max_lots_per_order} lots per order")
    if quantity <= 0:
        raise CorrectionError(
            f"{_name(child)}'s {' and '.join(bits)} allow less than one lot of {lot_size}: "
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


def _smallest(*limits: int | None) -> int | None:
    known = [n for n in limits if n]
    return min(known) if known else None


def _dry_run(child: Account) -> bool:
    return bool(engine_control_get().dry_run or getattr(settings, "DRY_RUN", False) or child.dry_run)


def _working_tags(child: Account, exchange: str, tradingsymbol: str, product: str) -> list[str]:
    return list(
        OrderMapping.objects.filter(
            child=child,
            exchange=exchange,
            tradingsymbol=tradingsymbol,
            product=product,
            status__in=PENDING,
        ).values_list("tag", flat=True)
    )


def correction_plan(
    *, child: Account, exchange: str, tradingsymbol: str, product: str, clients: ClientCache | None = None
) -> CorrectionPlan:
    """The corrective order for one child and instrument: side and quantity of expected − actual,
    capped by the child's caps and sliced at the freeze quantity (and max lots per order).

    Reads the child's broker positions (and LTP when it has a max order value); writes nothing.
    Raises CorrectionError when there is nothing to correct, orders are still working there, a cap
    allows less than one lot, or the child cannot trade.
    """
    _check_child_can_trade(child)
    held = replicated_positions(
        exchange=exchange, tradingsymbol=tradingsymbol, product=product, children=[child.pk]
    )
    expected = held.get((child.pk, exchange, tradingsymbol, product), (0, 0, 0))[0]
    client = _client(child, clients)
    actual = _broker_positions(child, client).get((exchange, tradingsymbol, product), 0)
    working = _working_tags(child, exchange, tradingsymbol, product)
    if working:
        raise CorrectionError(
            f"orders are still working in {exchange}:{tradingsymbol} for this child "
            f"({', '.join(working[:5])}); wait for them to settle"
        )
    drift = expected - actual
    if drift == 0:
        raise CorrectionError(f"{exchange}:{tradingsymbol} {product}: no drift (both {actual})")
    lot_size = _lot_sizes([(exchange, tradingsymbol)])[(exchange, tradingsymbol)]
    capped = _corrective_caps(child, client, exchange, tradingsymbol, abs(drift), lot_size)
    freeze = _freeze_quantities(client, [(exchange, tradingsymbol)])[(exchange, tradingsymbol)]
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
        dry_run=_dry_run(child),
        drift=abs(drift),
        slices=_slices(capped.quantity, lot_size, _smallest(freeze, capped.largest_order)),
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
    not part of the replicated position (see `allocator.CORRECTIVE`), so once it fills expected ==
    actual. `confirmed_quantity` (signed, as shown on the confirmation page) refuses the order when
    the order changed since the page was shown (the drift, or what the caps allow).
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
    master = _current_master()
    now = timezone.now()
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=child.pk)
        _check_child_can_trade(locked)
        if _working_tags(locked, exchange, tradingsymbol, product):
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
            kind="corrective_order_planned",
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


def flatten_plan(*, child: Account, clients: ClientCache | None = None) -> FlattenPlan:
    """Closing orders for every instrument where the child has a replicated position (read-only).

    Each closes the replicated position less exits already working, never more than the broker
    shows the child holding on that side (a flatten never turns a position around), in slices
    within the freeze quantity. The child's caps do not reduce it: exits continue.
    """
    _check_child_can_trade(child)
    held = {
        (ex, sym, prod): v
        for (_cid, ex, sym, prod), v in replicated_positions(children=[child.pk]).items()
        if v[0] != 0
    }
    if not held:
        return FlattenPlan(child=child, legs=(), dry_run=_dry_run(child))
    client = _client(child, clients)
    actual = _broker_positions(child, client)
    instruments = [(ex, sym) for ex, sym, _ in held]
    lots = _lot_sizes(instruments)
    freezes = _freeze_quantities(client, instruments)
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
        slices = _slices(quantity, lots[(ex, sym)], freezes[(ex, sym)])
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
    return FlattenPlan(child=child, legs=tuple(legs), dry_run=_dry_run(child))


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
    reason = _reason(reason, refused=CorrectionError)
    plan = flatten_plan(child=child, clients=clients)
    if not plan.orders:
        raise CorrectionError(
            f"nothing to flatten for {_name(child)}: no replicated position that the broker still shows"
        )
    master = _current_master()
    now = timezone.now()
    group_key = f"flatten-{child.pk}-{now:%Y%m%d%H%M%S%f}"
    has_buy = any(leg.side == Side.BUY for leg in plan.orders)
    created: list[OrderMapping] = []
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=child.pk)
        _check_child_can_trade(locked)
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
            kind="child_flattened",
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
