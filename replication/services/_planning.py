"""What corrective orders and flattens are planned from: the child's broker, lots, freeze quantities.

Both are sent as whole-lot slices no larger than the instrument's freeze quantity (one intent per
slice, tags `make_tag(allocation, child, slice_no)`), so a large client is never rejected at the
exchange. The freeze quantity is read from the child's broker instrument list, an underlying its
broker gives none for taking the freeze-quantity table staff keep in the admin (`brokers.freeze`),
with FREEZE_QUANTITIES (empty by default) as an override of that table (the engine's instrument
source, current for the day);
only when that read fails does the figure recorded on the latest allocation in the instrument
stand in (it can be weeks old, and the exchange revises freeze quantities).

A corrective order respects the child's caps: max lots per order makes more slices, max quantity
and max order value (a MARKET order priced at the child's LTP) cap the total, and the plan says
why. A flatten is an exit: caps never reduce it (DESIGN §3.3 step 7), it is only sliced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from brokers.base import BrokerClient
from brokers.errors import BrokerError
from brokers.types import InstrumentKey
from replication.allocation.positions import PENDING
from replication.clients import ClientCache
from replication.controls import engine_control_get
from replication.instruments import with_freeze_quantity
from replication.models import Allocation, OrderMapping
from replication.sizing import slice_quantity

logger = logging.getLogger(__name__)


class CorrectionError(ValueError):
    """A corrective order or a flatten that cannot be planned; the message says why."""


def current_master() -> Account:
    master = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()
    if master is None:
        raise CorrectionError("no enabled master account: corrective orders are recorded against it")
    return master


def check_child_can_trade(child: Account) -> None:
    if child.role != Role.CHILD:
        raise CorrectionError(f"{child} is not a child account")
    blocked: dict[str, str] = {
        AccountStatus.DISABLED: "is disabled",
        AccountStatus.HALTED: "is halted (nothing is sent); resume it first",
        AccountStatus.NEEDS_LOGIN: "needs a broker login first",
    }
    if child.status in blocked:
        raise CorrectionError(f"{child_name(child)} {blocked[child.status]}")


def child_name(child: Account) -> str:
    return child.display_name or child.broker_user_id or str(child.pk)


def child_client(child: Account, clients: ClientCache | None) -> BrokerClient:
    try:
        return (clients or ClientCache()).get(child)
    except CredentialDecryptError as exc:
        raise CorrectionError(f"credentials of {child_name(child)} cannot be read: {exc}") from exc


def child_broker_positions(child: Account, client: BrokerClient) -> dict[tuple[str, str, str], int]:
    try:
        positions = client.positions()
    except BrokerError as exc:
        raise CorrectionError(f"positions of {child_name(child)} unavailable: {exc}") from exc
    actual: dict[tuple[str, str, str], int] = {}
    for p in positions:
        key = (p.exchange, p.tradingsymbol, p.product.value)
        actual[key] = actual.get(key, 0) + p.quantity
    return actual


def lot_sizes(instruments: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
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


def freeze_quantities(
    client: BrokerClient, instruments: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int | None]:
    """Freeze quantity per instrument (None: unknown, the order goes out whole).

    The child's broker instrument list, an underlying its broker gives none for taking the
    freeze-quantity table staff keep in the admin, overridden by FREEZE_QUANTITIES (empty by
    default) (`replication.instruments`): today's figure, from the broker that enforces it. When
    the list cannot be read or does not have the instrument, the figure recorded on the latest
    allocation in that instrument.
    """
    wanted = set(instruments)
    found: dict[tuple[str, str], int | None] = {}
    try:
        listing = client.instruments()
    except BrokerError as exc:
        logger.warning("instrument list unavailable, freeze quantities from allocations: %s", exc)
        listing = []
    configured: dict[str, int] = settings.FREEZE_QUANTITIES
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


def whole_lot_slices(quantity: int, lot_size: int, largest: int | None) -> tuple[int, ...]:
    try:
        return slice_quantity(quantity, lot_size, largest)
    except ValueError as exc:  # a freeze quantity below one lot: no order could ever pass
        raise CorrectionError(str(exc)) from exc


def child_ltp(child: Account, client: BrokerClient, exchange: str, tradingsymbol: str) -> Decimal:
    key = InstrumentKey(exchange, tradingsymbol)
    try:
        price = client.ltp([key]).get(key)
    except BrokerError as exc:
        raise CorrectionError(
            f"LTP of {key} unavailable for {child_name(child)} ({exc}): the order value cannot be checked "
            "against the child's max order value"
        ) from exc
    if price is None or price <= 0:
        raise CorrectionError(
            f"no LTP for {key}: the order value cannot be checked against the child's max order value"
        )
    return price


def smallest_limit(*limits: int | None) -> int | None:
    known = [n for n in limits if n]
    return min(known) if known else None


def child_dry_run(child: Account) -> bool:
    return bool(engine_control_get().dry_run or settings.DRY_RUN or child.dry_run)


def working_tags(child: Account, exchange: str, tradingsymbol: str, product: str) -> list[str]:
    return list(
        OrderMapping.objects.filter(
            child=child,
            exchange=exchange,
            tradingsymbol=tradingsymbol,
            product=product,
            status__in=PENDING,
        ).values_list("tag", flat=True)
    )
