"""Placing orders on the paper exchange: many orders in one transaction, each as if alone.

`paper_orders_place` takes orders in arrival order and handles each exactly as a placement on its
own would (same checks, same margin test against the account's positions and live orders, same
matching), but loads the accounts, instruments and books of the whole batch with a few statements,
writes the orders, trades and positions with a few more, and commits once. An order sees the
orders of the same batch placed before it (its account's book is kept up to date in memory).
Input errors come back in the order's place, as an `InputRejected`, and consume no order number;
the rest of the batch is placed. An order the account cannot afford is stored REJECTED with
Kite's message. A database error rolls the whole batch back and is raised: nothing was placed.

`paper_order_place` (in `services`) is a batch of one, so there is one placement path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from brokers.errors import InputRejected
from brokers.paper import rows
from brokers.paper.margin import ZERO, MarginBreakdown, portfolio_margin
from brokers.paper.matching import (
    book_fill,
    choice_input,
    decimal_input,
    fill_order,
    insufficient_funds,
    on_arrival,
    validate_order,
)
from brokers.paper.models import (
    IST,
    LIVE_STATUSES,
    OrderStatus,
    OrderType,
    PaperAccount,
    PaperInstrument,
    PaperOrder,
    PaperPosition,
    PaperTrade,
    Product,
    Side,
    Validity,
    trading_date,
)
from brokers.paper.selectors import AccountBook, margin_rates, order_leg, spot_prices

MAX_TAG_LENGTH = 20
NO_MARGIN = MarginBreakdown()  # what an account with no positions and no live orders blocks


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order as a client sends it (values are checked by `paper_orders_place`)."""

    user_id: str
    exchange: str
    tradingsymbol: str
    side: str
    quantity: int
    product: str
    order_type: str
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: str = Validity.DAY
    variety: str = "regular"
    tag: str = ""


@dataclass(frozen=True, slots=True)
class _Clean:
    """An order whose values passed the checks that need no database."""

    index: int
    user_id: str
    key: tuple[str, str]
    side: str
    quantity: int
    product: str
    order_type: str
    price: Decimal
    trigger_price: Decimal
    validity: str
    variety: str
    tag: str


class _Book:
    """One account's book during a batch: what the margin test sees, kept current in memory."""

    __slots__ = ("account", "by_key", "live_orders", "positions", "touched")

    def __init__(self, account: PaperAccount, positions: list[PaperPosition], live: list[PaperOrder]):
        self.account = account
        self.positions = positions
        self.by_key = {(p.instrument_id, p.product): p for p in positions}
        self.live_orders = live
        self.touched: set[tuple[int, str]] = set()

    def view(self, spots: dict[str, Decimal]) -> AccountBook:
        return AccountBook(self.account, self.positions, self.live_orders, spots)

    def fill(self, order: PaperOrder, *, quantity: int, now: datetime) -> PaperTrade:
        """Apply a fill to the position (in memory) and return the trade row to write."""
        key = (order.instrument_id, order.product)
        position = self.by_key.get(key)
        if position is None:
            position = rows.build(
                PaperPosition,
                {"account": self.account, "instrument": order.instrument},
                exchange=order.exchange,
                tradingsymbol=order.tradingsymbol,
                product=order.product,
            )
            self.by_key[key] = position
            self.positions.append(position)
        book_fill(position, side=order.side, quantity=quantity, price=order.average_price)
        position.updated_at = now
        self.touched.add(key)
        return rows.build(
            PaperTrade,
            {"order": order, "account": self.account},
            trade_id=f"{order.order_id}01",  # orders fill completely, once
            exchange=order.exchange,
            tradingsymbol=order.tradingsymbol,
            product=order.product,
            side=order.side,
            quantity=quantity,
            price=order.average_price,
            filled_at=now,
        )


def _clean(index: int, order: NewOrder) -> _Clean:
    """The checks that need no database (InputRejected), with values normalised."""
    order_type = choice_input(OrderType, order.order_type, "order type")
    side = choice_input(Side, order.side, "transaction type")
    product = choice_input(Product, order.product, "product")
    validity = choice_input(Validity, order.validity, "validity")
    limit = (
        decimal_input(order.price, "price")
        if order.price is not None and order_type in (OrderType.LIMIT, OrderType.SL)
        else ZERO
    )
    trigger = (
        decimal_input(order.trigger_price, "trigger price")
        if order.trigger_price is not None and order_type in (OrderType.SL, OrderType.SLM)
        else ZERO
    )
    if order.variety != "regular":
        raise InputRejected(f"variety {order.variety!r} is not supported by the paper exchange (use regular)")
    if len(order.tag) > MAX_TAG_LENGTH:
        raise InputRejected(f"tag must be at most {MAX_TAG_LENGTH} characters")
    if validity == Validity.IOC and order_type not in (OrderType.MARKET, OrderType.LIMIT):
        raise InputRejected("IOC validity is allowed only for MARKET and LIMIT orders")
    if validity == Validity.TTL:
        raise InputRejected(
            "TTL validity needs a validity_ttl in minutes, which the paper exchange does not take "
            "(use DAY or IOC)"
        )
    return _Clean(
        index,
        order.user_id,
        (order.exchange.upper(), order.tradingsymbol.upper()),
        side,
        order.quantity,
        product,
        order_type,
        limit,
        trigger,
        validity,
        order.variety,
        order.tag,
    )


def order_day(now: datetime) -> str:
    """The IST date part of an order number (yymmdd)."""
    return f"{now.astimezone(IST):%y%m%d}"


def order_id_for(account: PaperAccount, now: datetime, *, day: str = "") -> str:
    """Digits like Kite's: IST date (yymmdd), account number (6) and the account's sequence (7).
    `day`: `order_day(now)`, when a batch has worked it out once for all its orders."""
    return f"{day or order_day(now)}{account.pk:06d}{account.order_seq:07d}"


def paper_orders_place(orders: Sequence[NewOrder]) -> list[PaperOrder | InputRejected]:
    """Place `orders` in this order, in one transaction; see the module docstring."""
    results: list[PaperOrder | InputRejected | None] = [None] * len(orders)
    cleaned: list[_Clean] = []
    for index, order in enumerate(orders):
        try:
            cleaned.append(_clean(index, order))
        except InputRejected as exc:
            results[index] = exc
    if cleaned:
        with transaction.atomic():
            _place(cleaned, results)
    assert all(r is not None for r in results)  # every order has its order or its error
    return results  # type: ignore[return-value]


def _place(cleaned: list[_Clean], results: list[PaperOrder | InputRejected | None]) -> None:
    accounts = rows.lock_accounts({c.user_id for c in cleaned})
    instruments = rows.instruments_by_keys({c.key for c in cleaned})
    today = trading_date()
    accepted: list[tuple[_Clean, PaperAccount, PaperInstrument]] = []
    for c in cleaned:
        account = accounts.get(c.user_id)
        instrument = instruments.get(c.key)
        try:
            if account is None:
                raise InputRejected(f"unknown paper account {c.user_id!r}")
            if instrument is None:
                raise InputRejected(f"unknown instrument {c.key[0]}:{c.key[1]}")
            validate_order(
                instrument=instrument,
                side=c.side,
                quantity=c.quantity,
                product=c.product,
                order_type=c.order_type,
                price=c.price,
                trigger_price=c.trigger_price,
                today=today,
            )
        except InputRejected as exc:
            results[c.index] = exc
            continue
        accepted.append((c, account, instrument))
    if not accepted:
        return

    # Books: an account that has never ordered holds nothing, so only the others are read.
    by_pk = {account.pk: account for _, account, _ in accepted}
    placed_before = [pk for pk, account in by_pk.items() if account.order_seq > 0]
    loaded = rows.books_rows(placed_before) if placed_before else {}
    books = {pk: _Book(account, *loaded.get(pk, ([], []))) for pk, account in by_pk.items()}
    spots = spot_prices(_short_option_underlyings(books.values(), accepted))
    rates = margin_rates()
    now = timezone.now()
    day = order_day(now)
    new_orders: list[PaperOrder] = []
    trades: list[PaperTrade] = []
    for c, account, instrument in accepted:
        book = books[account.pk]
        account.order_seq += 1
        order = rows.build(
            PaperOrder,
            {"account": account, "instrument": instrument},
            order_id=order_id_for(account, now, day=day),
            tag=c.tag,
            exchange=instrument.exchange,
            tradingsymbol=instrument.tradingsymbol,
            side=c.side,
            order_type=c.order_type,
            product=c.product,
            validity=c.validity,
            variety=c.variety,
            quantity=c.quantity,
            price=c.price,
            trigger_price=c.trigger_price,
            placed_at=now,
            updated_at=now,
        )
        new_orders.append(order)
        results[c.index] = order
        view = book.view(spots)
        existing = view.legs()
        before = portfolio_margin(existing, rates) if existing else NO_MARGIN
        after = portfolio_margin([*existing, order_leg(order, spots)], rates)
        required = after.total - before.total
        capital = view.capital
        if required > 0 and after.total > capital:
            order.status = OrderStatus.REJECTED
            order.status_message = insufficient_funds(required, capital - before.total)
            continue
        step = on_arrival(order, instrument.last_price)
        order.status = step.status
        if step.status == OrderStatus.OPEN and c.validity == Validity.IOC:
            order.status = OrderStatus.CANCELLED
            order.status_message = "IOC order cancelled: no match on arrival"
        if step.fill_price is not None:
            filled = fill_order(order, price=step.fill_price, now=now)
            trades.append(book.fill(order, quantity=filled, now=now))
        if order.status in LIVE_STATUSES:
            book.live_orders.append(order)
    _write(books.values(), new_orders, trades)


def _short_option_underlyings(
    books: Iterable[_Book], accepted: list[tuple[_Clean, PaperAccount, PaperInstrument]]
) -> set[str]:
    """Underlyings whose spot a short option leg needs (the margin model prices them on it)."""
    legs = [(instrument, c.side == Side.SELL) for c, _, instrument in accepted]
    for book in books:
        legs += [(p.instrument, p.quantity < 0) for p in book.positions]
        legs += [(o.instrument, o.side == Side.SELL) for o in book.live_orders]
    return {instrument.underlying for instrument, short in legs if short and instrument.is_option}


def _write(books: Iterable[_Book], orders: list[PaperOrder], trades: list[PaperTrade]) -> None:
    """Order numbers, orders, positions and trades: a few statements for the whole batch."""
    accounts = {o.account_id: o.account for o in orders}
    rows.update_many(list(accounts.values()), ["order_seq"])
    rows.insert_many(orders, key="order_id")
    for trade in trades:
        trade.order_id = trade.order.pk
    positions = [book.by_key[key] for book in books for key in book.touched]
    rows.insert_many([p for p in positions if p.pk is None])
    rows.update_many([p for p in positions if p.pk is not None], PaperPosition.fields_on_fill)
    rows.insert_many(trades)
