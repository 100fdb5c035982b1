"""Writes of the paper exchange: accounts, prices, orders (placed, modified, cancelled), the walk.

Every write runs in a transaction that first locks the account row (`select_for_update`), so
concurrent threads acting on one account serialise; different accounts proceed in parallel on
PostgreSQL (SQLite serialises all writers, `BEGIN IMMEDIATE`). Placement, the hot path, is in
`placement`: one order is a batch of one, and the paper client places the orders its threads send
at the same moment as one batch (`sequencer`). Matching rules are in `matching`. An order whose
extra margin exceeds the available margin is still accepted and recorded as REJECTED with Kite's
message, as on Kite.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from brokers.errors import InputRejected, OrderRejected
from brokers.paper.margin import ZERO, money, portfolio_margin
from brokers.paper.matching import (
    apply_step,
    choice_input,
    decimal_input,
    insufficient_funds,
    match_instruments,
    on_arrival,
    positive_input,
    quantize_price,
    validate_order,
)
from brokers.paper.models import (
    LIVE_STATUSES,
    OrderStatus,
    OrderType,
    PaperAccount,
    PaperInstrument,
    PaperOrder,
    Validity,
    trading_date,
)
from brokers.paper.placement import NewOrder, paper_orders_place
from brokers.paper.seeding import SeedResult, paper_instruments_seed
from brokers.paper.selectors import (
    account_book,
    margin_rates,
    order_leg,
    paper_account_get,
    paper_funds,
    paper_funds_detail,
    paper_instrument_get,
)
from brokers.paper.walk import WalkResult, paper_random_walk

__all__ = [
    "NewOrder",
    "SeedResult",
    "WalkResult",
    "paper_account_open",
    "paper_account_set_cash",
    "paper_funds",
    "paper_funds_detail",
    "paper_instruments_seed",
    "paper_order_cancel",
    "paper_order_modify",
    "paper_order_place",
    "paper_orders_place",
    "paper_price_set",
    "paper_random_walk",
]

MAX_MODIFICATIONS = 25


# --- Accounts ---------------------------------------------------------------------------------


def paper_account_open(*, user_id: str, cash: Decimal) -> PaperAccount:
    """The paper account for `user_id`, created with `cash` if new (an existing one keeps its cash)."""
    user_id = user_id.strip()
    if not user_id or len(user_id) > 64:
        raise InputRejected("user id must be 1 to 64 characters")
    opening = decimal_input(cash, "cash")
    if opening < 0:
        raise InputRejected(f"cash must not be negative, got {opening}")
    account, _ = PaperAccount.objects.get_or_create(user_id=user_id, defaults={"cash": money(opening)})
    return account


def paper_account_set_cash(*, user_id: str, cash: Decimal) -> PaperAccount:
    """Replace the account's cash ledger (its opening capital)."""
    amount = decimal_input(cash, "cash")
    if amount < 0:
        raise InputRejected(f"cash must not be negative, got {amount}")
    with transaction.atomic():
        account = paper_account_get(user_id=user_id, lock=True)
        account.cash = money(amount)
        account.save(update_fields=["cash"])
    return account


# --- Prices -----------------------------------------------------------------------------------


def paper_price_set(*, exchange: str, tradingsymbol: str, price: Decimal) -> list[PaperOrder]:
    """Set an instrument's last price, then match its resting orders. Returns the orders that moved."""
    last = quantize_price(positive_input(price, "price"))
    instrument = paper_instrument_get(exchange=exchange, tradingsymbol=tradingsymbol)
    PaperInstrument.objects.filter(pk=instrument.pk).update(last_price=last, updated_at=timezone.now())
    return match_instruments(instrument_ids={instrument.pk})


# --- Orders -----------------------------------------------------------------------------------


def paper_order_place(
    *,
    user_id: str,
    exchange: str,
    tradingsymbol: str,
    side: str,
    quantity: int,
    product: str,
    order_type: str,
    price: Decimal | None = None,
    trigger_price: Decimal | None = None,
    validity: str = Validity.DAY,
    variety: str = "regular",
    tag: str = "",
) -> PaperOrder:
    """Place an order and match it. Input errors raise InputRejected (nothing is stored); an order
    the account cannot afford is stored REJECTED with Kite's "Insufficient funds" message."""
    new = NewOrder(
        user_id=user_id,
        exchange=exchange,
        tradingsymbol=tradingsymbol,
        side=side,
        quantity=quantity,
        product=product,
        order_type=order_type,
        price=price,
        trigger_price=trigger_price,
        validity=validity,
        variety=variety,
        tag=tag,
    )
    (result,) = paper_orders_place([new])
    if isinstance(result, InputRejected):
        raise result
    return result


def _live_order(
    book_orders: list[PaperOrder], *, account: PaperAccount, order_id: str, action: str
) -> PaperOrder:
    """The live order with `order_id` from the loaded book, or InputRejected (unknown or final)."""
    for order in book_orders:
        if order.order_id == order_id:
            order.account = account
            return order
    final = (
        PaperOrder.objects.filter(account=account, order_id=order_id).values_list("status", flat=True).first()
    )
    if final is None:
        raise InputRejected(f"unknown order {order_id!r} for paper account {account.user_id!r}")
    raise InputRejected(f"Order {order_id} cannot be {action} as it is {final.lower()}")


def paper_order_modify(
    *,
    user_id: str,
    order_id: str,
    quantity: int | None = None,
    price: Decimal | None = None,
    trigger_price: Decimal | None = None,
    order_type: str | None = None,
) -> PaperOrder:
    """Modify a live order (OPEN or TRIGGER PENDING) and match it again at the current price.

    Raises InputRejected for unknown or final orders, bad values or more than 25 modifications, and
    OrderRejected (order unchanged) when the modified order needs more margin than is available.
    """
    new_type = choice_input(OrderType, order_type, "order type") if order_type is not None else None
    with transaction.atomic():
        account = paper_account_get(user_id=user_id, lock=True)
        book = account_book(account=account)
        order = _live_order(book.live_orders, account=account, order_id=order_id, action="modified")
        if order.modifications >= MAX_MODIFICATIONS:
            raise InputRejected("Maximum allowed order modifications exceeded.")
        rates = margin_rates()
        before = portfolio_margin(book.legs(), rates)
        capital = book.capital

        order.order_type = new_type or order.order_type
        if order.order_type == OrderType.MARKET:
            order.price = ZERO
        elif price is not None:
            order.price = decimal_input(price, "price")
        if order.order_type in (OrderType.MARKET, OrderType.LIMIT):
            order.trigger_price = ZERO
        elif trigger_price is not None:
            order.trigger_price = decimal_input(trigger_price, "trigger price")
        if quantity is not None:
            order.quantity = quantity  # validated below, with the lot size
        validate_order(
            instrument=order.instrument,
            side=order.side,
            quantity=order.quantity,
            product=order.product,
            order_type=order.order_type,
            price=order.price,
            trigger_price=order.trigger_price,
            today=trading_date(),
        )
        after = portfolio_margin([*book.legs(exclude_order_id=order_id), order_leg(order, book.spots)], rates)
        required = after.total - before.total
        if required > 0 and after.total > capital:
            raise OrderRejected(
                insufficient_funds(required, capital - before.total), code="insufficient_funds"
            )

        now = timezone.now()
        order.modifications += 1
        order.updated_at = now
        order.save(
            update_fields=["order_type", "price", "trigger_price", "quantity", "modifications", "updated_at"]
        )
        step = on_arrival(order, order.instrument.last_price)
        if step.status != order.status:
            positions = {(p.instrument_id, p.product): p for p in book.positions}
            apply_step(order, step, positions=positions, now=now)
        return order


def paper_order_cancel(*, user_id: str, order_id: str) -> PaperOrder:
    """Cancel a live order. Raises InputRejected for unknown or final orders."""
    with transaction.atomic():
        account = paper_account_get(user_id=user_id, lock=True)
        live = list(
            PaperOrder.objects.filter(
                account=account, order_id=order_id, status__in=LIVE_STATUSES
            ).select_related("instrument")
        )
        order = _live_order(live, account=account, order_id=order_id, action="cancelled")
        order.set_status(OrderStatus.CANCELLED)
        order.updated_at = timezone.now()
        order.save(update_fields=["status", "updated_at"])
        return order
