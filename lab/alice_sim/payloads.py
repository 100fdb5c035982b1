"""Paper exchange rows as Alice Blue JSON and CSV (the shapes of aliceblue-api-docs 03, 04, 07, 12)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from brokers.alice import vocab
from brokers.alice.scrip import COLUMNS
from brokers.paper.models import PaperInstrument, PaperOrder, PaperPosition
from brokers.types import Funds, InstrumentType, OrderStatus, OrderType, Product, Validity

IST = ZoneInfo("Asia/Kolkata")
INDEX_UNDERLYINGS = frozenset(
    {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX", "BANKEX"}
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
STATUS_TO_ALICE = {
    OrderStatus.PENDING: "PENDING",
    OrderStatus.OPEN: "OPEN",
    OrderStatus.TRIGGER_PENDING: "TRIGGER PENDING",
    OrderStatus.COMPLETE: "COMPLETE",
    OrderStatus.CANCELLED: "CANCELLED",
    OrderStatus.REJECTED: "REJECTED",
}


def _num(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def _name(row: PaperInstrument) -> str:
    if row.instrument_type in (InstrumentType.EQ, InstrumentType.INDEX):
        return row.tradingsymbol
    return (row.underlying or row.name).upper()


def _kind(row: PaperInstrument) -> str:
    index = (row.underlying or row.name).upper() in INDEX_UNDERLYINGS
    return {
        InstrumentType.FUT: "FUTIDX" if index else "FUTSTK",
        InstrumentType.CE: "OPTIDX" if index else "OPTSTK",
        InstrumentType.PE: "OPTIDX" if index else "OPTSTK",
        InstrumentType.INDEX: "INDEX",
        InstrumentType.EQ: "EQ",
    }[InstrumentType(row.instrument_type)]


def contract_expiry(row: PaperInstrument) -> Any:
    """The expiry Alice Blue would publish. The lab's demo contracts carry a far-future expiry under
    a symbol of another year (`NIFTY25DECFUT` expiring 2099-12-29): the year is the symbol's."""
    if row.expiry is None:
        return None
    name = _name(row)
    digits = row.tradingsymbol[len(name) : len(name) + 2] if row.tradingsymbol.startswith(name) else ""
    if digits.isdigit() and int(digits) != row.expiry.year % 100:
        try:
            return row.expiry.replace(year=2000 + int(digits))
        except ValueError:
            return row.expiry.replace(year=2000 + int(digits), day=28)
    return row.expiry


def alice_symbol(row: PaperInstrument) -> str:
    """Alice Blue's own spelling (`SBIN-EQ`, `NIFTY30DEC25F`, `NIFTY30DEC25C24000`)."""
    kind = InstrumentType(row.instrument_type)
    if kind is InstrumentType.EQ:
        return f"{row.tradingsymbol}-EQ" if row.exchange == "NSE" else row.tradingsymbol
    if kind is InstrumentType.INDEX:
        return row.tradingsymbol
    expiry = contract_expiry(row)
    day = f"{expiry.day:02d}{MONTHS[expiry.month - 1]}{expiry:%y}" if expiry else ""
    if kind is InstrumentType.FUT:
        return f"{_name(row)}{day}F"
    strike = row.strike.normalize()
    strike_text = f"{strike:f}" if strike != strike.to_integral_value() else str(int(strike))
    return f"{_name(row)}{day}{kind.value[0]}{strike_text}"


def contract_row(row: PaperInstrument) -> dict[str, str]:
    expiry = contract_expiry(row)
    option = row.instrument_type if row.instrument_type in ("CE", "PE") else "XX"
    return {
        "Exch": row.exchange,
        "Exchange Segment": {"NSE": "nse_cm", "NFO": "nse_fo", "BSE": "bse_cm", "BFO": "bse_fo"}.get(
            row.exchange, row.exchange.lower()
        ),
        "Symbol": _name(row),
        "Token": str(row.instrument_token),
        "Instrument Type": _kind(row),
        "Option Type": option,
        "Strike Price": f"{row.strike:f}" if row.strike else "0",
        "Instrument Name": row.name or _name(row),
        "Formatted Instrument Name": alice_symbol(row),
        "Trading Symbol": alice_symbol(row),
        "Expiry Date": expiry.isoformat() if expiry else "",
        "Lot Size": str(row.lot_size),
        "Tick Size": f"{row.tick_size:f}",
    }


def contract_csv(rows: Iterable[PaperInstrument]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
    writer.writeheader()
    for row in rows:
        writer.writerow(contract_row(row))
    return out.getvalue()


def limits(funds: Funds) -> dict[str, Any]:
    """`/limits/`: tradingLimit = what is free, utilizedMargin = what is blocked."""
    return {
        "tradingLimit": _num(funds.available),
        "openingCashLimit": _num(funds.available + funds.used),
        "intradayPayin": 0,
        "collateralMargin": 0,
        "creditForSell": 0,
        "adhocMargin": 0,
        "utilizedMargin": _num(funds.used),
        "blockedForPayout": 0,
        "utilizedSpanMargin": 0,
        "utilizedExposureMargin": 0,
    }


def _ist(moment: Any) -> str:
    return moment.astimezone(IST).strftime("%d-%b-%Y %H:%M:%S") if moment else ""


def order(row: PaperOrder, *, user_id: str) -> dict[str, Any]:
    """One row of `/orders/book`."""
    inst = row.instrument
    status = OrderStatus(row.status)
    pending = 0 if status.is_final else row.quantity - row.filled_quantity
    cancelled = row.quantity - row.filled_quantity if status is OrderStatus.CANCELLED else 0
    return {
        "clientId": user_id,
        "placedBy": user_id,
        "brokerOrderId": row.order_id,
        "exchange": row.exchange,
        "exchangeOrderId": f"11{row.order_id[-14:]}",
        "formattedInstrumentName": alice_symbol(inst),
        "tradingSymbol": alice_symbol(inst),
        "instrumentId": str(inst.instrument_token),
        "transactionType": row.side,
        "quantity": row.quantity,
        "product": vocab.PRODUCT_TO_ALICE[Product(row.product)],
        "orderComplexity": "REGULAR",
        "orderType": vocab.ORDER_TYPE_TO_ALICE[OrderType(row.order_type)],
        "price": float(row.price),
        "averageTradedPrice": float(row.average_price),
        "slTriggerPrice": float(row.trigger_price),
        "validity": vocab.VALIDITY_TO_ALICE.get(Validity(row.validity), "DAY"),
        "disclosedQuantity": 0,
        "orderTime": _ist(row.placed_at),
        "exchangeUpdateTime": _ist(row.updated_at),
        "rejectionReason": row.status_message if status is OrderStatus.REJECTED else "",
        "mainLegOrderId": "",
        "cancelledQuantity": cancelled,
        "pendingQuantity": pending,
        "filledQuantity": row.filled_quantity,
        "appKey": "",
        "algoId": "",
        "source": "API",
        "orderTag": row.tag,
        "trailingSlAmount": 0,
        "brokerUpdateTime": _ist(row.updated_at),
        "marketProtectionPercent": "",
        "exchangeTimestamp": _ist(row.placed_at),
        "orderStatus": STATUS_TO_ALICE[status],
    }


def position(row: PaperPosition, *, unrealised: Decimal) -> dict[str, Any]:
    """One row of `/positions`."""
    inst = row.instrument
    buy_avg = row.buy_value / row.buy_quantity if row.buy_quantity else Decimal("0")
    sell_avg = row.sell_value / row.sell_quantity if row.sell_quantity else Decimal("0")
    return {
        "instrumentId": str(inst.instrument_token),
        "tradingSymbol": alice_symbol(inst),
        "formattedInstrumentName": alice_symbol(inst),
        "exchange": row.exchange,
        "product": vocab.PRODUCT_TO_ALICE[Product(row.product)],
        "netQuantity": row.quantity,
        "netAveragePrice": _num(row.average_price),
        "overnightQuantity": 0,
        "overnightPrice": 0.0,
        "buyQuantity": row.buy_quantity,
        "sellQuantity": row.sell_quantity,
        "daySellQuantity": row.sell_quantity,
        "dayBuyQuantity": row.buy_quantity,
        "dayBuyPrice": _num(buy_avg),
        "daySellPrice": _num(sell_avg),
        "multiplier": 1,
        "lotsize": inst.lot_size,
        "ticksize": float(inst.tick_size),
        "previousDayClose": None,
        "realizedPnl": _num(row.realised_pnl),
        "unrealizedPnl": _num(unrealised),
        "ltp": _num(inst.last_price),
        "buyPrice": 0,
        "sellPrice": 0.0,
        "dayBuyValue": _num(row.buy_value),
        "daySellValue": _num(row.sell_value),
        "validity": "",
    }


def margin(total: Decimal, available: Decimal) -> dict[str, Any]:
    short = max(Decimal("0"), total - available)
    return {
        "status": "Ok",
        "message": "Success",
        "totalCashAvailable": f"{available:.2f}",
        "preOrderMargin": "",
        "postOrderMargin": f"{total:.2f}",
        "currentOrderMargin": f"{total:.2f}",
        "rmsValidationCheck": "",
        "fundShort": f"{short:.2f}" if short else "",
    }


def order_update(row: PaperOrder, *, user_id: str) -> dict[str, Any]:
    """One message of the order feed (the webhook's Noren fields, docs 10), `t: "om"`."""
    inst = row.instrument
    return {
        "t": "om",
        "norenordno": row.order_id,
        "actid": user_id,
        "exch": row.exchange,
        "tsym": alice_symbol(inst),
        "token": str(inst.instrument_token),
        "qty": str(row.quantity),
        "prc": f"{row.price:.2f}",
        "prd": vocab.PRODUCT_TO_ALICE[Product(row.product)],
        "status": STATUS_TO_ALICE[OrderStatus(row.status)],
        "reporttype": STATUS_TO_ALICE[OrderStatus(row.status)],
        "trantype": row.side[0],
        "prctyp": vocab.ORDER_TYPE_TO_ALICE[OrderType(row.order_type)],
        "ret": vocab.VALIDITY_TO_ALICE.get(Validity(row.validity), "DAY"),
        "fillshares": str(row.filled_quantity),
        "avgprc": f"{row.average_price:.2f}",
        "rejreason": row.status_message if row.status == OrderStatus.REJECTED else "",
        "trgprc": f"{row.trigger_price:.2f}",
        "remarks": row.tag,
        "exch_tm": _ist(row.updated_at),
    }
