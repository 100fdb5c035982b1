"""Paper exchange rows as Kite v3 payloads (kite/API.md §4-§10, shapes of kite/fixtures/).

Pure functions, no queries beyond the rows' already loaded relations. Money leaves as JSON numbers
(floats: the wire format, as Kite sends it), quantities as ints, order ids as strings, timestamps
as IST wall-clock `YYYY-MM-DD HH:MM:SS`.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.paper.models import OrderStatus, PaperInstrument, PaperOrder, PaperPosition, PaperTrade
from brokers.paper.selectors import PaperFundsDetail
from brokers.types import MarginEstimate
from lab.kite_sim.auth import IST, Session

ZERO = Decimal("0")
EXCHANGES = ["NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD", "MF"]
PRODUCTS = ["CNC", "NRML", "MIS"]
ORDER_TYPES = ["MARKET", "LIMIT", "SL", "SL-M"]
INSTRUMENT_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)


def number(value: Decimal | int | None) -> float:
    """A Decimal as the JSON number Kite would send (the wire format, not our arithmetic)."""
    return float(value or 0)


def ist(moment: datetime | None) -> str | None:
    """Aware datetime -> Kite's IST-naive `YYYY-MM-DD HH:MM:SS` (None stays None)."""
    if moment is None:
        return None
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def csv_number(value: Decimal | int) -> str:
    """A number for the instruments CSV: always a number, with a decimal point (`0.0`, `0.05`)."""
    text = format(Decimal(value).normalize(), "f")
    return text if "." in text else f"{text}.0"


# --- user ----------------------------------------------------------------------------------------


def profile(user_id: str) -> dict[str, Any]:
    """`GET /user/profile` data (fixtures/profile.json keys)."""
    return {
        "user_id": user_id,
        "user_type": "individual",
        "email": f"{user_id.lower()}@paper.invalid",
        "user_name": f"Paper {user_id}",
        "user_shortname": user_id,
        "broker": "ZERODHA",
        "exchanges": EXCHANGES,
        "products": PRODUCTS,
        "order_types": ORDER_TYPES,
        "avatar_url": None,
        "meta": {"demat_consent": "physical"},
    }


def session(session: Session) -> dict[str, Any]:
    """`POST /session/token` data (fixtures/generate_session.json keys)."""
    return {
        **profile(session.user_id),
        "api_key": session.api_key,
        "access_token": session.access_token,
        "public_token": session.public_token,
        "enctoken": "",
        "refresh_token": "",
        "silo": "",
        "login_time": ist(session.created_at),
    }


def _segment(
    *, enabled: bool, cash: Decimal, used: Decimal, available: Decimal, span: Decimal, premium: Decimal
) -> dict[str, Any]:
    return {
        "enabled": enabled,
        "net": number(available),
        "available": {
            "adhoc_margin": 0,
            "cash": number(cash),
            "opening_balance": number(cash),
            "live_balance": number(available),
            "collateral": 0,
            "intraday_payin": 0,
        },
        "utilised": {
            "debits": number(used),
            "exposure": 0,
            "m2m_realised": 0,
            "m2m_unrealised": 0,
            "option_premium": number(premium),
            "payout": 0,
            "span": number(span),
            "holding_sales": 0,
            "turnover": 0,
            "liquid_collateral": 0,
            "stock_collateral": 0,
            "delivery": 0,
        },
    }


def margins(funds: PaperFundsDetail) -> dict[str, dict[str, Any]]:
    """`GET /user/margins` data: used = utilised.debits, available = net (API.md §5).

    The paper exchange trades the equity segment only; commodity is there, disabled and empty.
    """
    margin = funds.margin
    equity = _segment(
        enabled=True,
        cash=funds.cash,
        used=funds.used,
        available=funds.available,
        span=margin.span,
        premium=margin.option_premium,
    )
    commodity = _segment(enabled=False, cash=ZERO, used=ZERO, available=ZERO, span=ZERO, premium=ZERO)
    return {"equity": equity, "commodity": commodity}


# --- orders and trades ---------------------------------------------------------------------------


def exchange_order_id(order: PaperOrder) -> str | None:
    """A made-up exchange id for orders that reached the exchange (not for rejected ones)."""
    if order.status == OrderStatus.REJECTED:
        return None
    return f"1{order.pk:015d}"


def order(row: PaperOrder, *, user_id: str, market_protection: int | float = 0) -> dict[str, Any]:
    """One order of `GET /orders` (fixtures/orders.json keys plus `tags`)."""
    remaining = row.quantity - row.filled_quantity
    live = row.status in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING)
    reached = exchange_order_id(row)
    return {
        "placed_by": user_id,
        "order_id": row.order_id,
        "exchange_order_id": reached,
        "parent_order_id": None,
        "status": row.status,
        "status_message": row.status_message or None,
        "status_message_raw": row.status_message or None,
        "order_timestamp": ist(row.placed_at),
        "exchange_update_timestamp": ist(row.updated_at) if reached else None,
        "exchange_timestamp": ist(row.placed_at) if reached else None,
        "variety": row.variety,
        "modified": row.modifications > 0,
        "exchange": row.exchange,
        "tradingsymbol": row.tradingsymbol,
        "instrument_token": row.instrument.instrument_token,
        "order_type": row.order_type,
        "transaction_type": row.side,
        "validity": row.validity,
        "product": row.product,
        "quantity": row.quantity,
        "disclosed_quantity": 0,
        "price": number(row.price),
        "trigger_price": number(row.trigger_price),
        "average_price": number(row.average_price),
        "filled_quantity": row.filled_quantity,
        "pending_quantity": remaining if live else 0,
        "cancelled_quantity": remaining if row.status == OrderStatus.CANCELLED else 0,
        "market_protection": market_protection,
        "meta": {},
        "tag": row.tag or None,
        "tags": [row.tag] if row.tag else [],
        "guid": hashlib.sha256(f"{row.order_id}:{row.placed_at.isoformat()}".encode()).hexdigest()[:20],
    }


def order_history(
    row: PaperOrder, *, user_id: str, market_protection: int | float = 0
) -> list[dict[str, Any]]:
    """`GET /orders/{id}`: the order's states, oldest first, ending with its current one.

    The paper exchange keeps only the current state; the usual way there is filled in
    (PUT ORDER REQ RECEIVED -> VALIDATION PENDING -> OPEN PENDING -> ...).
    """
    final = order(row, user_id=user_id, market_protection=market_protection)
    before = {
        **final,
        "filled_quantity": 0,
        "average_price": 0.0,
        "pending_quantity": row.quantity,
        "cancelled_quantity": 0,
        "status_message": None,
        "status_message_raw": None,
        "exchange_order_id": None,
        "exchange_timestamp": None,
        "exchange_update_timestamp": None,
    }
    steps = ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING"]
    if row.status != OrderStatus.REJECTED:
        steps.append("OPEN PENDING")
        if row.status != OrderStatus.OPEN and row.order_type in ("SL", "SL-M"):
            steps.append(OrderStatus.TRIGGER_PENDING)
        if row.status not in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING):
            steps.append(OrderStatus.OPEN)
    if steps[-1] == row.status:
        steps.pop()
    return [{**before, "status": status} for status in steps] + [final]


def trade(row: PaperTrade, *, instrument_token: int) -> dict[str, Any]:
    """One fill of `GET /trades` / `GET /orders/{id}/trades` (order_timestamp is time only)."""
    return {
        "trade_id": row.trade_id,
        "order_id": row.order.order_id,
        "exchange_order_id": exchange_order_id(row.order),
        "exchange": row.exchange,
        "tradingsymbol": row.tradingsymbol,
        "instrument_token": instrument_token,
        "product": row.product,
        "transaction_type": row.side,
        "average_price": number(row.price),
        "quantity": row.quantity,
        "fill_timestamp": ist(row.filled_at),
        "exchange_timestamp": ist(row.filled_at),
        "order_timestamp": row.order.placed_at.astimezone(IST).strftime("%H:%M:%S"),
    }


# --- portfolio -----------------------------------------------------------------------------------


def position(row: PaperPosition, *, unrealised: Decimal) -> dict[str, Any]:
    """One row of `GET /portfolio/positions` (fixtures/positions.json keys); paper positions are
    all from today, so the day figures equal the net ones."""
    last = row.instrument.last_price
    buy_price = row.buy_value / row.buy_quantity if row.buy_quantity else ZERO
    sell_price = row.sell_value / row.sell_quantity if row.sell_quantity else ZERO
    pnl = row.realised_pnl + unrealised
    return {
        "tradingsymbol": row.tradingsymbol,
        "exchange": row.exchange,
        "instrument_token": row.instrument.instrument_token,
        "product": row.product,
        "quantity": row.quantity,
        "overnight_quantity": 0,
        "multiplier": 1,
        "average_price": number(row.average_price),
        "close_price": 0,
        "last_price": number(last),
        "value": number(row.sell_value - row.buy_value),
        "pnl": number(pnl),
        "m2m": number(pnl),
        "unrealised": number(unrealised),
        "realised": number(row.realised_pnl),
        "buy_quantity": row.buy_quantity,
        "buy_price": number(buy_price),
        "buy_value": number(row.buy_value),
        "buy_m2m": number(row.buy_value),
        "sell_quantity": row.sell_quantity,
        "sell_price": number(sell_price),
        "sell_value": number(row.sell_value),
        "sell_m2m": number(row.sell_value),
        "day_buy_quantity": row.buy_quantity,
        "day_buy_price": number(buy_price),
        "day_buy_value": number(row.buy_value),
        "day_sell_quantity": row.sell_quantity,
        "day_sell_price": number(sell_price),
        "day_sell_value": number(row.sell_value),
    }


# --- instruments and quotes ----------------------------------------------------------------------


def instruments_csv(rows: Iterable[PaperInstrument]) -> str:
    """The instruments dump (API.md §9): strike and last_price always numbers; indices are
    instrument_type EQ in segment INDICES, as in Kite's dump."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INSTRUMENT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.instrument_token,
                row.exchange_token or str(row.instrument_token // 256),
                row.tradingsymbol,
                row.name,
                csv_number(row.last_price),
                row.expiry.isoformat() if row.expiry else "",
                csv_number(row.strike),
                csv_number(row.tick_size),
                row.lot_size,
                "EQ" if row.instrument_type == "INDEX" else row.instrument_type,
                row.segment,
                row.exchange,
            ]
        )
    return out.getvalue()


def ltp(row: PaperInstrument) -> dict[str, Any]:
    return {"instrument_token": row.instrument_token, "last_price": number(row.last_price)}


def ohlc(row: PaperInstrument) -> dict[str, Any]:
    last = number(row.last_price)
    return {**ltp(row), "ohlc": {"open": last, "high": last, "low": last, "close": last}}


def quote(row: PaperInstrument, *, now: datetime) -> dict[str, Any]:
    """`GET /quote` for one instrument (fixtures/quote.json keys); no book, no volume on paper."""
    empty_depth = [{"price": 0, "quantity": 0, "orders": 0} for _ in range(5)]
    last = number(row.last_price)
    return {
        **ohlc(row),
        "timestamp": ist(now),
        "last_trade_time": ist(row.updated_at),
        "last_quantity": 0,
        "buy_quantity": 0,
        "sell_quantity": 0,
        "volume": 0,
        "average_price": last,
        "oi": 0,
        "oi_day_high": 0,
        "oi_day_low": 0,
        "net_change": 0,
        "lower_circuit_limit": round(last * 0.8, 2),
        "upper_circuit_limit": round(last * 1.2, 2),
        "depth": {"buy": empty_depth, "sell": [dict(level) for level in empty_depth]},
    }


# --- margin calculators --------------------------------------------------------------------------


def _charges() -> dict[str, Any]:
    return {
        "transaction_tax": 0,
        "transaction_tax_type": "",
        "exchange_turnover_charge": 0,
        "sebi_turnover_charge": 0,
        "brokerage": 0,
        "stamp_duty": 0,
        "gst": {"igst": 0, "cgst": 0, "sgst": 0, "total": 0},
        "total": 0,
    }


def margin(
    estimate: MarginEstimate, *, exchange: str = "", tradingsymbol: str = "", kind: str = ""
) -> dict[str, Any]:
    """One margin object (fixtures/order_margins.json keys); `total` is what the order blocks."""
    return {
        "type": kind,
        "tradingsymbol": tradingsymbol,
        "exchange": exchange,
        "span": number(estimate.span),
        "exposure": number(estimate.exposure),
        "option_premium": number(estimate.option_premium),
        "additional": 0,
        "bo": 0,
        "cash": 0,
        "var": 0,
        "pnl": {"realised": 0, "unrealised": 0},
        "leverage": 1 if kind else 0,
        "charges": _charges(),
        "total": number(estimate.total),
    }


def basket(*, final: MarginEstimate, orders: Sequence[tuple[str, str, MarginEstimate]]) -> dict[str, Any]:
    """`POST /margins/basket` data: `initial` (no hedge benefit: the orders' own margins added up),
    `final` (the basket's), each order's own margin, and (empty) charges."""
    initial = MarginEstimate(
        total=sum((e.total for _, _, e in orders), ZERO),
        span=sum((e.span for _, _, e in orders), ZERO),
        exposure=sum((e.exposure for _, _, e in orders), ZERO),
        option_premium=sum((e.option_premium for _, _, e in orders), ZERO),
    )
    return {
        "initial": margin(initial),
        "final": margin(final),
        "orders": [
            margin(e, exchange=exchange, tradingsymbol=symbol, kind="equity")
            for exchange, symbol, e in orders
        ],
        "charges": _charges(),
    }


def order_update(
    row: PaperOrder, *, user_id: str, api_secret: str, market_protection: int | float = 0
) -> dict[str, Any]:
    """One order as a postback / WebSocket order update (fixtures/postback.json, API.md §11-§12):
    the order's fields plus `user_id`, `unfilled_quantity`, `app_id` and the postback checksum,
    sha256(order_id + order_timestamp + api_secret)."""
    data = order(row, user_id=user_id, market_protection=market_protection)
    data.pop("modified", None)
    data.pop("tags", None)
    stamp = data["order_timestamp"] or ""
    data.update(
        user_id=user_id,
        unfilled_quantity=data["pending_quantity"],
        app_id=0,
        checksum=hashlib.sha256(f"{row.order_id}{stamp}{api_secret}".encode()).hexdigest(),
    )
    return data
