"""Reads of the paper exchange shaped for the simulator's routes (instruments loaded with each row)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Q

from brokers.errors import InputRejected
from brokers.paper.models import PaperInstrument, PaperOrder, PaperTrade, live_on, trading_date
from brokers.paper.selectors import paper_account_get
from brokers.types import InstrumentKey


def sim_order_list(*, user_id: str) -> list[PaperOrder]:
    """Today's book of one paper account, oldest first, each order with its instrument."""
    account = paper_account_get(user_id=user_id)
    return list(
        PaperOrder.objects.filter(account=account).select_related("instrument").order_by("placed_at", "id")
    )


def sim_order_get(*, user_id: str, order_id: str) -> PaperOrder:
    order = (
        PaperOrder.objects.filter(account__user_id=user_id, order_id=order_id)
        .select_related("instrument")
        .first()
    )
    if order is None:
        raise InputRejected("Couldn't find that `order_id`.")
    return order


def sim_trade_list(*, user_id: str, order_id: str | None = None) -> list[PaperTrade]:
    """Fills of one account (or one of its orders), oldest first, with order and instrument."""
    account = paper_account_get(user_id=user_id)
    trades = PaperTrade.objects.filter(account=account).select_related("order", "order__instrument")
    if order_id is not None:
        trades = trades.filter(order__order_id=order_id)
    return list(trades.order_by("filled_at", "id"))


def sim_instrument_list(*, exchange: str | None = None) -> list[PaperInstrument]:
    """Kite's daily dump: live instruments only (a contract that has expired is no longer listed)."""
    instruments = PaperInstrument.objects.filter(live_on(trading_date()))
    if exchange:
        instruments = instruments.filter(exchange=exchange.upper())
    return list(instruments.order_by("exchange", "tradingsymbol"))


def sim_instruments_by_key(keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, PaperInstrument]:
    """The instruments that exist among `keys` (unknown ones are left out, as Kite does)."""
    if not keys:
        return {}
    match = Q()
    for key in keys:
        match |= Q(exchange=key.exchange, tradingsymbol=key.tradingsymbol)
    return {
        InstrumentKey(row.exchange, row.tradingsymbol): row for row in PaperInstrument.objects.filter(match)
    }
