"""Reads of the paper exchange: accounts, books, instruments, prices and funds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from brokers.errors import InputRejected
from brokers.paper.margin import (
    ZERO,
    Leg,
    MarginBreakdown,
    MarginRates,
    money,
    portfolio_margin,
)
from brokers.paper.models import (
    InstrumentType,
    OrderType,
    PaperAccount,
    PaperInstrument,
    PaperOrder,
    PaperPosition,
    PaperTrade,
    Side,
    live_on,
    trading_date,
)
from brokers.paper.rows import book_rows
from brokers.types import Funds, InstrumentKey, MarginEstimate, OrderRequest, SegmentFunds

SPOT_TYPES = (InstrumentType.INDEX, InstrumentType.EQ)


def margin_rates() -> MarginRates:
    """The margin rates in force: the PAPER_*_MARGIN_RATE settings."""
    return MarginRates(
        futures=Decimal(str(settings.PAPER_FUTURES_MARGIN_RATE)),
        short_option=Decimal(str(settings.PAPER_SHORT_OPTION_MARGIN_RATE)),
        cnc=Decimal(str(settings.PAPER_CNC_MARGIN_RATE)),
        mis=Decimal(str(settings.PAPER_MIS_MARGIN_RATE)),
        hedge_offset=Decimal(str(settings.PAPER_HEDGE_OFFSET_RATE)),
    )


def paper_account_get(*, user_id: str, lock: bool = False) -> PaperAccount:
    """The account, or InputRejected. `lock=True` takes the row lock (inside a transaction)."""
    queryset = PaperAccount.objects.select_for_update() if lock else PaperAccount.objects.all()
    try:
        return queryset.get(user_id=user_id)
    except PaperAccount.DoesNotExist:
        raise InputRejected(f"unknown paper account {user_id!r}") from None


def paper_account_exists(*, user_id: str) -> bool:
    """Whether the paper exchange has an account `user_id` (opened with `manage.py paper open`)."""
    return PaperAccount.objects.filter(user_id=user_id).exists()


def paper_instrument_get(*, exchange: str, tradingsymbol: str) -> PaperInstrument:
    try:
        return PaperInstrument.objects.get(exchange=exchange.upper(), tradingsymbol=tradingsymbol.upper())
    except PaperInstrument.DoesNotExist:
        raise InputRejected(f"unknown instrument {exchange.upper()}:{tradingsymbol.upper()}") from None


def paper_instrument_list(
    *, underlying: str | None = None, live_only: bool = False, today: date | None = None
) -> list[PaperInstrument]:
    """Instruments (of one underlying): the live ones first (indices, equities, futures, then
    options by expiry and strike), then the contracts expired before `today` (the exchange's date)
    in the same order; `live_only` leaves those out, as Kite's instrument dump does."""
    today = today or trading_date()
    queryset = PaperInstrument.objects.all()
    if underlying:
        queryset = queryset.filter(underlying=underlying.upper())
    if live_only:
        queryset = queryset.filter(live_on(today))
    rank: dict[str, int] = {InstrumentType.INDEX: 0, InstrumentType.EQ: 1, InstrumentType.FUT: 2}

    def order(i: PaperInstrument) -> tuple[bool, int, str, date, Decimal, str]:
        kind = rank.get(i.instrument_type, 3)
        return (i.expired_on(today), kind, i.exchange, i.expiry or date.min, i.strike, i.tradingsymbol)

    return sorted(queryset, key=order)


def paper_ltp(*, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
    """Last prices for the keys that exist (unknown keys are left out, as Kite does)."""
    if not keys:
        return {}
    match = Q()
    for key in keys:
        match |= Q(exchange=key.exchange, tradingsymbol=key.tradingsymbol)
    rows = PaperInstrument.objects.filter(match).values_list("exchange", "tradingsymbol", "last_price")
    return {InstrumentKey(exchange, symbol): price for exchange, symbol, price in rows}


def paper_order_list(*, user_id: str) -> list[PaperOrder]:
    account = paper_account_get(user_id=user_id)
    return list(PaperOrder.objects.filter(account=account).order_by("placed_at", "id"))


def paper_order_get(*, user_id: str, order_id: str) -> PaperOrder:
    order = PaperOrder.objects.filter(account__user_id=user_id, order_id=order_id).first()
    if order is None:
        raise InputRejected(f"unknown order {order_id!r} for paper account {user_id!r}")
    return order


def paper_trade_list(*, user_id: str, order_id: str | None = None) -> list[PaperTrade]:
    account = paper_account_get(user_id=user_id)
    queryset = PaperTrade.objects.filter(account=account)
    if order_id is not None:
        queryset = queryset.filter(order__order_id=order_id)
    return list(queryset.order_by("filled_at", "id"))


def paper_position_list(*, user_id: str) -> list[PaperPosition]:
    """Every position the account has had today, flat ones included (as Kite lists them)."""
    account = paper_account_get(user_id=user_id)
    return list(PaperPosition.objects.filter(account=account).select_related("instrument"))


# --- Margin state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountBook:
    """What margin is computed from: the account's positions and live orders, with spot prices."""

    account: PaperAccount
    positions: list[PaperPosition]
    live_orders: list[PaperOrder]
    spots: dict[str, Decimal]

    def legs(self, *, exclude_order_id: str | None = None) -> list[Leg]:
        legs = [position_leg(p, self.spots) for p in self.positions if p.quantity]
        legs += [order_leg(o, self.spots) for o in self.live_orders if o.order_id != exclude_order_id]
        return legs

    @property
    def realised_pnl(self) -> Decimal:
        return sum((p.realised_pnl for p in self.positions), ZERO)

    @property
    def unrealised_pnl(self) -> Decimal:
        return money(sum((unrealised_pnl(p) for p in self.positions), ZERO))

    @property
    def capital(self) -> Decimal:
        return self.account.cash + self.realised_pnl + self.unrealised_pnl


def unrealised_pnl(position: PaperPosition) -> Decimal:
    last = position.instrument.last_price
    if not position.quantity or last <= 0:
        return ZERO
    return (last - position.average_price) * position.quantity


def spot_prices(underlyings: Iterable[str]) -> dict[str, Decimal]:
    """Last price of each underlying's index (preferred) or equity row; unknown ones are left out."""
    wanted = {u for u in underlyings if u}
    if not wanted:
        return {}
    rows = (
        PaperInstrument.objects.filter(
            underlying__in=wanted, instrument_type__in=SPOT_TYPES, last_price__gt=0
        )
        .order_by("underlying", "-instrument_type", "-exchange")  # INDEX before EQ, NSE before BSE
        .values_list("underlying", "last_price")
    )
    spots: dict[str, Decimal] = {}
    for underlying, price in rows:
        spots.setdefault(underlying, price)
    return spots


def _short_option_underlyings(
    instruments_and_qty: Iterable[tuple[PaperInstrument, int]],
) -> set[str]:
    return {
        instrument.underlying for instrument, qty in instruments_and_qty if instrument.is_option and qty < 0
    }


def account_book(*, account: PaperAccount, extra: Sequence[tuple[PaperInstrument, int]] = ()) -> AccountBook:
    """Load positions and live orders (with instruments) and the spots short options need.

    `extra` names (instrument, signed quantity) pairs about to be added, so their spots load too.
    """
    positions, live_orders = book_rows(account.pk)
    needing_spot = _short_option_underlyings(
        [(p.instrument, p.quantity) for p in positions]
        + [(o.instrument, o.signed_quantity) for o in live_orders]
        + list(extra)
    )
    return AccountBook(account, positions, live_orders, spot_prices(needing_spot))


def margin_basis(order: PaperOrder) -> Decimal:
    """The price an open order blocks margin at: its limit price, trigger (SL-M) or the last price."""
    if order.order_type in (OrderType.LIMIT, OrderType.SL) and order.price > 0:
        return order.price
    if order.order_type == OrderType.SLM and order.trigger_price > 0:
        return order.trigger_price
    return order.instrument.last_price


def instrument_leg(
    instrument: PaperInstrument, *, quantity: int, price: Decimal, product: str, spots: dict[str, Decimal]
) -> Leg:
    return Leg(
        key=instrument.key_text,
        kind=instrument.instrument_type,
        underlying=instrument.underlying,
        quantity=quantity,
        price=price,
        product=product,
        underlying_price=spots.get(instrument.underlying, ZERO),
        strike=instrument.strike,
    )


def position_leg(position: PaperPosition, spots: dict[str, Decimal]) -> Leg:
    instrument = position.instrument
    price = instrument.last_price if instrument.last_price > 0 else position.average_price
    return instrument_leg(
        instrument, quantity=position.quantity, price=price, product=position.product, spots=spots
    )


def order_leg(order: PaperOrder, spots: dict[str, Decimal]) -> Leg:
    remaining = order.quantity - order.filled_quantity
    quantity = remaining if order.side == Side.BUY else -remaining
    return instrument_leg(
        order.instrument, quantity=quantity, price=margin_basis(order), product=order.product, spots=spots
    )


@dataclass(frozen=True, slots=True)
class PaperFundsDetail:
    """An account's funds: capital = cash + realised + unrealised; available = capital - used."""

    cash: Decimal
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    margin: MarginBreakdown

    @property
    def capital(self) -> Decimal:
        return self.cash + self.realised_pnl + self.unrealised_pnl

    @property
    def used(self) -> Decimal:
        return self.margin.total

    @property
    def available(self) -> Decimal:
        return self.capital - self.used

    def as_funds(self) -> Funds:
        equity = SegmentFunds(segment="equity", enabled=True, used=self.used, available=self.available)
        commodity = SegmentFunds(segment="commodity", enabled=False, used=ZERO, available=ZERO)
        return Funds.from_segments((equity, commodity))


def funds_detail(book: AccountBook, rates: MarginRates | None = None) -> PaperFundsDetail:
    return PaperFundsDetail(
        cash=book.account.cash,
        realised_pnl=book.realised_pnl,
        unrealised_pnl=book.unrealised_pnl,
        margin=portfolio_margin(book.legs(), rates or margin_rates()),
    )


def paper_funds_detail(*, user_id: str) -> PaperFundsDetail:
    account = paper_account_get(user_id=user_id)
    return funds_detail(account_book(account=account))


def paper_funds(*, user_id: str) -> Funds:
    """Kite-like funds: one enabled equity segment (used, available) and a disabled commodity one."""
    return paper_funds_detail(user_id=user_id).as_funds()


# --- Margin calculators -----------------------------------------------------------------------


def _request_instruments(requests: Sequence[OrderRequest]) -> dict[InstrumentKey, PaperInstrument]:
    match = Q()
    for req in requests:
        match |= Q(exchange=req.exchange.upper(), tradingsymbol=req.tradingsymbol.upper())
    found = (
        {InstrumentKey(i.exchange, i.tradingsymbol): i for i in PaperInstrument.objects.filter(match)}
        if requests
        else {}
    )
    for req in requests:
        key = InstrumentKey(req.exchange.upper(), req.tradingsymbol.upper())
        if key not in found:
            raise InputRejected(f"unknown instrument {key}")
        if found[key].instrument_type == InstrumentType.INDEX:
            raise InputRejected(f"{key} is an index and cannot be traded")
    return found


def request_leg(
    req: OrderRequest, instruments: dict[InstrumentKey, PaperInstrument], spots: dict[str, Decimal]
) -> Leg:
    """An order request as a leg, priced like an open order (limit, trigger for SL-M, else last)."""
    instrument = instruments[InstrumentKey(req.exchange.upper(), req.tradingsymbol.upper())]
    order_type, side = str(req.order_type), str(req.side)
    if order_type in (OrderType.LIMIT, OrderType.SL) and req.price:
        basis = req.price
    elif order_type == OrderType.SLM and req.trigger_price:
        basis = req.trigger_price
    else:
        basis = instrument.last_price
    quantity = req.quantity if side == Side.BUY else -req.quantity
    return instrument_leg(instrument, quantity=quantity, price=basis, product=req.product, spots=spots)


def _estimate(breakdown: MarginBreakdown, per_order: tuple[Decimal, ...]) -> MarginEstimate:
    return MarginEstimate(
        total=breakdown.total,
        span=breakdown.span,
        option_premium=breakdown.option_premium,
        per_order=per_order,
    )


def paper_order_margins(*, user_id: str, requests: Sequence[OrderRequest]) -> list[MarginEstimate]:
    """Margin of each order on its own (no positions, no other orders, no hedge from them)."""
    paper_account_get(user_id=user_id)
    instruments = _request_instruments(requests)
    spots = spot_prices(i.underlying for i in instruments.values() if i.is_option)
    rates = margin_rates()
    estimates = []
    for req in requests:
        breakdown = portfolio_margin([request_leg(req, instruments, spots)], rates)
        estimates.append(_estimate(breakdown, (breakdown.total,)))
    return estimates


def paper_basket_margin(*, user_id: str, requests: Sequence[OrderRequest]) -> MarginEstimate:
    """Extra margin the basket would block given the account's positions and open orders (hedges
    included), never below zero; `per_order` holds each order's margin on its own."""
    account = paper_account_get(user_id=user_id)
    instruments = _request_instruments(requests)
    book = account_book(account=account)
    spots = {**book.spots, **spot_prices(i.underlying for i in instruments.values() if i.is_option)}
    rates = margin_rates()
    legs = [request_leg(req, instruments, spots) for req in requests]
    existing = [
        replace(leg, underlying_price=spots.get(leg.underlying, leg.underlying_price)) for leg in book.legs()
    ]
    before = portfolio_margin(existing, rates)
    after = portfolio_margin([*existing, *legs], rates)
    alone = tuple(portfolio_margin([leg], rates).total for leg in legs)
    return MarginEstimate(
        total=max(after.total - before.total, ZERO),
        span=max(after.span - before.span, ZERO),
        option_premium=max(after.option_premium - before.option_premium, ZERO),
        per_order=alone,
    )
