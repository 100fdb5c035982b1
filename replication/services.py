"""Staff decisions: allocations held for approval, corrective orders, flattening a child.

Every change is audited in the transaction that makes it. Corrective and flatten orders are committed
as tagged intents (`OrderMapping` PLANNED) of a sized allocation of their own; the orchestrator's next
tick sends them like any other intent. No broker write happens here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from brokers.errors import BrokerError
from brokers.types import Side
from replication.allocator import CORRECTIVE, PENDING, make_tag, replicated_positions
from replication.audit import audit
from replication.clients import ClientCache
from replication.controls import engine_control_get
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
)

logger = logging.getLogger(__name__)


class AllocationDecisionError(ValueError):
    """The allocation is not waiting for a decision."""


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
    quantity: int
    lot_size: int
    dry_run: bool

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == Side.BUY else -self.quantity

    @property
    def instrument(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def lots(self) -> int:
        return self.quantity // self.lot_size


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
        raise CorrectionError(f"{child.display_name or child.broker_user_id} {blocked[child.status]}")


def _broker_positions(child: Account, clients: ClientCache | None) -> dict[tuple[str, str, str], int]:
    try:
        positions = (clients or ClientCache()).get(child).positions()
    except (BrokerError, CredentialDecryptError) as exc:
        raise CorrectionError(f"positions of {child.display_name or child.pk} unavailable: {exc}") from exc
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
    """The corrective order for one child and instrument: side and quantity of expected − actual.

    Reads the child's broker positions; writes nothing. Raises CorrectionError when there is
    nothing to correct, orders are still working there, or the child cannot trade.
    """
    _check_child_can_trade(child)
    held = replicated_positions(
        exchange=exchange, tradingsymbol=tradingsymbol, product=product, children=[child.pk]
    )
    expected = held.get((child.pk, exchange, tradingsymbol, product), (0, 0, 0))[0]
    actual = _broker_positions(child, clients).get((exchange, tradingsymbol, product), 0)
    working = _working_tags(child, exchange, tradingsymbol, product)
    if working:
        raise CorrectionError(
            f"orders are still working in {exchange}:{tradingsymbol} for this child "
            f"({', '.join(working[:5])}); wait for them to settle"
        )
    drift = expected - actual
    if drift == 0:
        raise CorrectionError(f"{exchange}:{tradingsymbol} {product}: no drift (both {actual})")
    return CorrectionPlan(
        child=child,
        exchange=exchange,
        tradingsymbol=tradingsymbol,
        product=product,
        expected=expected,
        actual=actual,
        side=Side.BUY if drift > 0 else Side.SELL,
        quantity=abs(drift),
        lot_size=_lot_sizes([(exchange, tradingsymbol)])[(exchange, tradingsymbol)],
        dry_run=_dry_run(child),
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
    """Plan one corrective order that brings the child's broker position back to expected.

    One allocation (sized, margin_source "corrective", kind open or close by direction) and one
    PLANNED intent, committed with an audit row; the next tick sends it. The corrective order is
    not part of the replicated position (see `allocator.CORRECTIVE`), so once it fills expected ==
    actual. `confirmed_quantity` (signed, as shown on the confirmation page) refuses the order when
    the drift changed since the page was shown.
    """
    plan = correction_plan(
        child=child, exchange=exchange, tradingsymbol=tradingsymbol, product=product, clients=clients
    )
    if confirmed_quantity is not None and confirmed_quantity != plan.signed_quantity:
        raise CorrectionError(
            f"the drift changed since the confirmation page ({confirmed_quantity:+d} shown, "
            f"{plan.signed_quantity:+d} now); review it again"
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
            master_quantity=plan.quantity,
            lot_size=plan.lot_size,
            master_lots=plan.quantity // plan.lot_size,
            margin_source=CORRECTIVE,
            reason=reason,
            master_seen_at=now,
            decided_by=actor,
            decided_at=now,
        )
        mapping = OrderMapping.objects.create(
            allocation=alloc,
            child=locked,
            tag=make_tag(alloc.pk, locked.pk, 0),
            status=MappingStatus.DRY_RUN if plan.dry_run else MappingStatus.PLANNED,
            exchange=exchange,
            tradingsymbol=tradingsymbol,
            product=product,
            side=plan.side,
            lots=plan.quantity // plan.lot_size,
            quantity=plan.quantity,
            reason_code=CORRECTIVE,
            reason=f"{reason}" + ("; dry run: not sent" if plan.dry_run else ""),
            finished_at=now if plan.dry_run else None,
        )
        audit(
            kind="corrective_order_planned",
            actor=actor,
            account=locked,
            allocation=alloc,
            mapping=mapping,
            message=f"{mapping.tag}: {plan.side} {plan.quantity} {plan.instrument} {product} "
            f"(expected {plan.expected}, actual {plan.actual})" + (" — dry run" if plan.dry_run else ""),
            data={
                "expected": plan.expected,
                "actual": plan.actual,
                "side": plan.side,
                "quantity": plan.quantity,
                "dry_run": plan.dry_run,
            },
        )
    return mapping


def flatten_plan(*, child: Account, clients: ClientCache | None = None) -> FlattenPlan:
    """Closing orders for every instrument where the child has a replicated position (read-only).

    Each closes the replicated position less exits already working, never more than the broker
    shows the child holding on that side (a flatten never turns a position around).
    """
    _check_child_can_trade(child)
    held = {
        (ex, sym, prod): v
        for (_cid, ex, sym, prod), v in replicated_positions(children=[child.pk]).items()
        if v[0] != 0
    }
    if not held:
        return FlattenPlan(child=child, legs=(), dry_run=_dry_run(child))
    actual = _broker_positions(child, clients)
    lots = _lot_sizes([(ex, sym) for ex, sym, _ in held])
    legs = []
    for (ex, sym, prod), (position, pending_buy, pending_sell) in sorted(held.items()):
        side = Side.SELL if position > 0 else Side.BUY
        working_exit = pending_sell if position > 0 else pending_buy
        broker = actual.get((ex, sym, prod), 0)
        broker_same_side = max(0, broker if position > 0 else -broker)
        quantity = max(0, min(abs(position) - working_exit, broker_same_side))
        note = ""
        if working_exit:
            note = f"{working_exit} already being closed"
        if broker_same_side < abs(position) - working_exit:
            note = f"the broker shows {broker}: closing only what is there"
        legs.append(FlattenLeg(ex, sym, prod, position, broker, side, quantity, lots[(ex, sym)], note))
    return FlattenPlan(child=child, legs=tuple(legs), dry_run=_dry_run(child))


def child_flatten(
    *, child: Account, actor: str, reason: str, clients: ClientCache | None = None
) -> list[OrderMapping]:
    """Plan closing orders for everything the engine holds for this child (see `flatten_plan`).

    One closing allocation per instrument (exit ratio 1, one group: buy-to-close legs go before
    sell-to-close legs, so a hedge is never left naked), one PLANNED intent each, and the child's
    entries not yet sent withdrawn; all in one transaction with audit rows. The next tick sends them.
    """
    if not reason.strip():
        raise CorrectionError("a reason is required to flatten a child")
    plan = flatten_plan(child=child, clients=clients)
    if not plan.orders:
        raise CorrectionError(
            f"nothing to flatten for {child.display_name or child.broker_user_id}: no replicated "
            "position that the broker still shows"
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
                master_lots=leg.quantity // leg.lot_size,
                master_position_before=leg.held,
                exit_ratio=1,
                reason=f"flatten by {actor}: {reason}",
                master_seen_at=now,
                decided_by=actor,
                decided_at=now,
            )
            created.append(
                OrderMapping.objects.create(
                    allocation=alloc,
                    child=locked,
                    wave=1 if has_buy and leg.side == Side.SELL else 0,
                    tag=make_tag(alloc.pk, locked.pk, 0),
                    status=MappingStatus.DRY_RUN if plan.dry_run else MappingStatus.PLANNED,
                    exchange=leg.exchange,
                    tradingsymbol=leg.tradingsymbol,
                    product=leg.product,
                    side=leg.side,
                    lots=leg.quantity // leg.lot_size,
                    quantity=leg.quantity,
                    reason_code="flatten",
                    reason=f"flatten by {actor}: {reason}" + ("; dry run: not sent" if plan.dry_run else ""),
                    finished_at=now if plan.dry_run else None,
                )
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
