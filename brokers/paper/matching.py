"""Order checks and matching for the paper exchange: validation, fills, positions, resting orders.

Matching: MARKET fills at once at the last price. LIMIT fills when crossed (BUY when last <= limit,
SELL when last >= limit): at the last price when it is marketable on arrival (placed, modified or
just triggered), at its limit price when a later price change crosses it. SL waits in TRIGGER
PENDING until the last price reaches the trigger (BUY: last >= trigger, SELL: last <= trigger),
then behaves as a LIMIT at its price; SL-M then fills at the last price. Orders fill completely (no
partial fills). IOC orders that do not fill on arrival are cancelled (by the placing service).

A price change and a placement racing on PostgreSQL can leave a crossed order resting until the
next price change of that instrument (the placement read the old price).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache

from django.db import models, transaction
from django.utils import timezone

from brokers.errors import InputRejected
from brokers.paper import rows
from brokers.paper.margin import ZERO, money
from brokers.paper.models import (
    LIVE_STATUSES,
    InstrumentType,
    OrderStatus,
    OrderType,
    PaperAccount,
    PaperInstrument,
    PaperOrder,
    PaperPosition,
    PaperTrade,
    Product,
    Side,
    live_on,
    trading_date,
)
from brokers.types import Vocabulary

PRICE_PLACES = Decimal("0.0001")
DERIVATIVE_PRODUCTS = frozenset({Product.NRML, Product.MIS})
# MTF (margin trading) is an equity product at Kite; the paper exchange lends nothing, so an MTF
# order blocks its full value like CNC (brokers.paper.margin).
EQUITY_PRODUCTS = frozenset({Product.CNC, Product.MIS, Product.MTF})


# --- Input checks -----------------------------------------------------------------------------


def decimal_input(value: object, what: str) -> Decimal:
    if isinstance(value, float):
        value = str(value)  # a float from a caller: take its shortest repr, never its binary value
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise InputRejected(f"{what} must be a number, got {value!r}") from exc
    if not number.is_finite():
        raise InputRejected(f"{what} must be a finite number, got {value!r}")
    return number


def positive_input(value: object, what: str) -> Decimal:
    number = decimal_input(value, what)
    if number <= 0:
        raise InputRejected(f"{what} must be positive, got {number}")
    return number


@cache
def _choice_values(choices: type[Vocabulary]) -> tuple[str, ...]:
    return tuple(member.value for member in choices)


def choice_input(choices: type[Vocabulary], value: object, what: str) -> str:
    text = str(value).upper()
    if text not in _choice_values(choices):
        raise InputRejected(f"{what} must be one of {', '.join(_choice_values(choices))}, got {value!r}")
    return text


def check_tick(price: Decimal, instrument: PaperInstrument, what: str) -> None:
    tick = instrument.tick_size
    if tick > 0 and price % tick != 0:
        raise InputRejected(
            f"Tick size for this script is {tick.normalize()}. "
            f"Kindly enter {what} in the multiple of tick size."
        )


def validate_order(
    *,
    instrument: PaperInstrument,
    side: str,
    quantity: int,
    product: str,
    order_type: str,
    price: Decimal,
    trigger_price: Decimal,
    today: date,
) -> None:
    """Raise InputRejected for anything Kite refuses synchronously. `today` is the exchange's
    date (`trading_date()`): a contract that expired before it no longer trades."""
    name = instrument.key_text
    if instrument.instrument_type == InstrumentType.INDEX:
        raise InputRejected(f"{name} is an index and cannot be traded")
    if instrument.expired_on(today):
        raise InputRejected(
            f"{name} expired on {instrument.expiry:%d %b %Y}: orders in an expired contract are refused"
        )
    if instrument.segment.startswith("MCX") or instrument.exchange == "MCX":
        raise InputRejected(f"{name}: the commodity segment is not enabled on the paper exchange")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise InputRejected(f"quantity must be a positive whole number, got {quantity!r}")
    lot = max(instrument.lot_size, 1)
    if quantity % lot:
        raise InputRejected(f"Quantity {quantity} is not a multiple of the lot size {lot} of {name}")
    if instrument.freeze_quantity and quantity > instrument.freeze_quantity:
        raise InputRejected(
            f"Quantity {quantity} exceeds the freeze quantity {instrument.freeze_quantity} of {name}; "
            "slice the order"
        )
    allowed = DERIVATIVE_PRODUCTS if instrument.is_derivative else EQUITY_PRODUCTS
    if product not in allowed:
        raise InputRejected(
            f"Product {product} is not allowed for {name} (use {' or '.join(sorted(allowed))})"
        )
    if order_type in (OrderType.LIMIT, OrderType.SL):
        if price <= 0:
            raise InputRejected(f"{order_type} orders need a positive price")
        check_tick(price, instrument, "price")
    if order_type in (OrderType.SL, OrderType.SLM):
        if trigger_price <= 0:
            raise InputRejected(f"{order_type} orders need a positive trigger price")
        check_tick(trigger_price, instrument, "trigger price")
    if order_type == OrderType.SL:
        if side == Side.BUY and trigger_price > price:
            raise InputRejected(
                "Trigger price for stoploss buy orders should be lower than or equal to the price"
            )
        if side == Side.SELL and trigger_price < price:
            raise InputRejected(
                "Trigger price for stoploss sell orders should be higher than or equal to the price"
            )
    if order_type in (OrderType.MARKET, OrderType.SLM) and instrument.last_price <= 0:
        raise InputRejected(f"{name} has no last price yet; a {order_type} order cannot be priced")


# --- Matching ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    status: str
    fill_price: Decimal | None = None


def crosses(side: str, last: Decimal, limit: Decimal) -> bool:
    return last > 0 and (last <= limit if side == Side.BUY else last >= limit)


def triggered(side: str, last: Decimal, trigger: Decimal) -> bool:
    return last > 0 and (last >= trigger if side == Side.BUY else last <= trigger)


def on_arrival(order: PaperOrder, last: Decimal) -> Step:
    """An order reaching the market: placed, modified, or its stop just triggered."""
    if order.order_type == OrderType.MARKET:
        return Step(OrderStatus.COMPLETE, last)
    if order.order_type in (OrderType.SL, OrderType.SLM) and not triggered(
        order.side, last, order.trigger_price
    ):
        return Step(OrderStatus.TRIGGER_PENDING)
    if order.order_type == OrderType.SLM or crosses(order.side, last, order.price):
        return Step(OrderStatus.COMPLETE, last)
    return Step(OrderStatus.OPEN)


def on_price_change(order: PaperOrder, last: Decimal) -> Step | None:
    """A resting order seeing a new last price; None when nothing happens."""
    if order.status == OrderStatus.TRIGGER_PENDING:
        step = on_arrival(order, last)
        return None if step.status == OrderStatus.TRIGGER_PENDING else step
    if crosses(order.side, last, order.price):
        return Step(OrderStatus.COMPLETE, order.price)
    return None


def quantize_price(value: Decimal) -> Decimal:
    return value.quantize(PRICE_PLACES, rounding=ROUND_HALF_EVEN)


def book_fill(position: PaperPosition, *, side: str, quantity: int, price: Decimal) -> None:
    """Apply one fill to a position: average cost on increases, realised P&L on reductions."""
    signed = quantity if side == Side.BUY else -quantity
    held = position.quantity
    if held == 0 or (held > 0) == (signed > 0):
        new = held + signed
        position.average_price = quantize_price(
            (abs(held) * position.average_price + quantity * price) / abs(new)
        )
    else:
        closed = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        position.realised_pnl += money((price - position.average_price) * closed * direction)
        new = held + signed
        if new == 0:
            position.average_price = ZERO
        elif (new > 0) != (held > 0):
            position.average_price = quantize_price(price)  # flipped: the rest opens at the fill price
    position.quantity = new
    if side == Side.BUY:
        position.buy_quantity += quantity
        position.buy_value += money(quantity * price)
    else:
        position.sell_quantity += quantity
        position.sell_value += money(quantity * price)


def fill_order(order: PaperOrder, *, price: Decimal, now: datetime) -> int:
    """Mark the rest of `order` filled at `price` (in memory); returns the quantity filled now."""
    quantity = order.quantity - order.filled_quantity
    order.status = OrderStatus.COMPLETE
    order.filled_quantity = order.quantity
    order.average_price = quantize_price(price)
    order.updated_at = now
    return quantity


def record_fill(
    order: PaperOrder,
    *,
    quantity: int,
    positions: dict[tuple[int, str], PaperPosition],
    now: datetime,
) -> None:
    """Write the trade row and the position for a fill of a saved order."""
    key = (order.instrument_id, order.product)
    position = positions.get(key)
    if position is None:
        position = PaperPosition(
            account=order.account,
            instrument=order.instrument,
            exchange=order.exchange,
            tradingsymbol=order.tradingsymbol,
            product=order.product,
        )
        positions[key] = position
    book_fill(position, side=order.side, quantity=quantity, price=order.average_price)
    position.updated_at = now
    if position.pk is None:
        rows.insert(position)
    else:
        rows.update(position, PaperPosition.fields_on_fill)
    trade = PaperTrade(
        trade_id=f"{order.order_id}01",  # orders fill completely, once
        order=order,
        account=order.account,
        exchange=order.exchange,
        tradingsymbol=order.tradingsymbol,
        product=order.product,
        side=order.side,
        quantity=quantity,
        price=order.average_price,
        filled_at=now,
    )
    rows.insert(trade)


ORDER_STATE_FIELDS = ["status", "status_message", "filled_quantity", "average_price", "updated_at"]


def apply_step(
    order: PaperOrder, step: Step, *, positions: dict[tuple[int, str], PaperPosition], now: datetime
) -> None:
    """Move a saved order to the step's status, filling it when the step carries a price."""
    if step.status != order.status:
        order.set_status(step.status)
    order.updated_at = now
    filled = fill_order(order, price=step.fill_price, now=now) if step.fill_price is not None else 0
    order.save(update_fields=ORDER_STATE_FIELDS)
    if filled:
        record_fill(order, quantity=filled, positions=positions, now=now)


def insufficient_funds(required: Decimal, available: Decimal) -> str:
    return (
        f"Insufficient funds. Required margin is {money(required)} "
        f"but available margin is {money(available)}."
    )


# --- Resting orders -------------------------------------------------------------------------


def _resting(instrument_ids: Collection[int]) -> models.QuerySet[PaperOrder]:
    """Live orders in these instruments, leaving out contracts that have expired: their orders
    never fill again (the exchange refuses new ones; its price may still move)."""
    live = live_on(trading_date())
    return PaperOrder.objects.filter(
        instrument_id__in=instrument_ids,
        status__in=LIVE_STATUSES,
        instrument__in=PaperInstrument.objects.filter(live),
    )


def match_instruments(*, instrument_ids: Collection[int]) -> list[PaperOrder]:
    account_ids = set(_resting(instrument_ids).values_list("account_id", flat=True))
    moved: list[PaperOrder] = []
    for account_id in sorted(account_ids):
        moved += match_account(account_id=account_id, instrument_ids=instrument_ids)
    return moved


def match_account(*, account_id: int, instrument_ids: Collection[int]) -> list[PaperOrder]:
    with transaction.atomic():
        account = PaperAccount.objects.select_for_update().get(pk=account_id)
        orders = list(
            _resting(instrument_ids)
            .filter(account=account)
            .select_related("instrument")
            .order_by("placed_at", "id")
        )
        positions = {
            (p.instrument_id, p.product): p
            for p in PaperPosition.objects.filter(account=account, instrument_id__in=instrument_ids)
        }
        now = timezone.now()
        moved = []
        for order in orders:
            order.account = account
            step = on_price_change(order, order.instrument.last_price)
            if step is not None:
                apply_step(order, step, positions=positions, now=now)
                moved.append(order)
        return moved
