"""Paper exchange rows as Angel One JSON (the shapes of angelone-api-docs 04, 05, 07, 12, 18)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from brokers.angel import vocab
from brokers.angel.scrip import INDEX_UNDERLYINGS, angel_symbol, format_expiry
from brokers.paper.models import PaperInstrument, PaperOrder, PaperPosition
from brokers.types import Funds, InstrumentType, MarginEstimate, OrderStatus, OrderType, Product, Validity

IST = ZoneInfo("Asia/Kolkata")
ZERO = Decimal("0")
STATUS_TO_ANGEL = {
    OrderStatus.PENDING: "open pending",
    OrderStatus.OPEN: "open",
    OrderStatus.TRIGGER_PENDING: "trigger pending",
    OrderStatus.COMPLETE: "complete",
    OrderStatus.CANCELLED: "cancelled",
    OrderStatus.REJECTED: "rejected",
}


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def _kind(row: PaperInstrument) -> str:
    index = (row.underlying or row.name).upper() in INDEX_UNDERLYINGS
    return {
        InstrumentType.FUT: "FUTIDX" if index else "FUTSTK",
        InstrumentType.CE: "OPTIDX" if index else "OPTSTK",
        InstrumentType.PE: "OPTIDX" if index else "OPTSTK",
        InstrumentType.INDEX: "AMXIDX",
        InstrumentType.EQ: "",
    }[InstrumentType(row.instrument_type)]


def _name(row: PaperInstrument) -> str:
    if row.instrument_type == InstrumentType.EQ:
        return row.tradingsymbol
    if row.instrument_type == InstrumentType.INDEX:
        return row.tradingsymbol
    return (row.underlying or row.name).upper()


def angel_expiry(row: PaperInstrument) -> date | None:
    """The expiry Angel would publish for a paper contract. The lab's demo contracts carry a
    far-future expiry (so they never lapse) under a symbol of another year (`NIFTY25DECFUT`
    expiring 2099-12-29); Angel's symbol and expiry always agree, so the year is the symbol's."""
    if row.expiry is None:
        return None
    name = _name(row)
    digits = row.tradingsymbol[len(name) : len(name) + 2] if row.tradingsymbol.startswith(name) else ""
    if digits.isdigit() and int(digits) != row.expiry.year % 100:
        try:
            return row.expiry.replace(year=2000 + int(digits))
        except ValueError:  # 29 February
            return row.expiry.replace(year=2000 + int(digits), day=28)
    return row.expiry


def scrip_symbol(row: PaperInstrument) -> str:
    """Angel's spelling of a paper instrument (`NIFTY30DEC25FUT`, `SBIN-EQ`)."""
    kind = InstrumentType(row.instrument_type)
    if kind is InstrumentType.EQ and row.exchange != "NSE":
        return row.tradingsymbol
    if kind is InstrumentType.INDEX:
        return row.tradingsymbol
    return angel_symbol(name=_name(row), instrument_type=kind, expiry=angel_expiry(row), strike=row.strike)


def scrip(row: PaperInstrument) -> dict[str, Any]:
    """One row of `OpenAPIScripMaster.json` (strike in paise x 100 as Angel writes it)."""
    return {
        "token": str(row.instrument_token),
        "symbol": scrip_symbol(row),
        "name": _name(row),
        "expiry": format_expiry(expiry) if (expiry := angel_expiry(row)) else "",
        "strike": f"{(row.strike * 100 if row.strike else Decimal('-1')):.6f}",
        "lotsize": str(row.lot_size),
        "instrumenttype": _kind(row),
        "exch_seg": row.exchange,
        "tick_size": f"{row.tick_size * 100:.6f}",
    }


def rms(funds: Funds) -> dict[str, Any]:
    """`getRMS`: net = what is free, utiliseddebits = what is blocked, cash = both."""
    return {
        "net": money(funds.available),
        "availablecash": money(funds.available + funds.used),
        "availableintradaypayin": "0",
        "availablelimitmargin": "0",
        "collateral": "0",
        "m2munrealized": "0",
        "m2mrealized": "0",
        "utiliseddebits": money(funds.used),
        "utilisedspan": "0",
        "utilisedoptionpremium": "0",
        "utilisedholdingsales": "0",
        "utilisedexposure": "0",
        "utilisedturnover": "0",
        "utilisedpayout": "0",
    }


def _ist(moment: Any) -> str:
    return moment.astimezone(IST).strftime("%d-%b-%Y %H:%M:%S") if moment else ""


def order(row: PaperOrder) -> dict[str, Any]:
    """One row of `getOrderBook`."""
    inst = row.instrument
    status = STATUS_TO_ANGEL[OrderStatus(row.status)]
    final = OrderStatus(row.status).is_final
    unfilled = 0 if final else row.quantity - row.filled_quantity
    cancelled = row.quantity - row.filled_quantity if row.status == OrderStatus.CANCELLED else 0
    order_type = OrderType(row.order_type)
    return {
        "variety": vocab.variety_for(order_type),
        "ordertype": vocab.ORDER_TYPE_TO_ANGEL[order_type],
        "producttype": vocab.PRODUCT_TO_ANGEL[Product(row.product)],
        "duration": vocab.VALIDITY_TO_ANGEL.get(Validity(row.validity), "DAY"),
        "price": float(row.price),
        "triggerprice": float(row.trigger_price),
        "quantity": str(row.quantity),
        "disclosedquantity": "0",
        "squareoff": 0,
        "stoploss": 0,
        "trailingstoploss": 0,
        "tradingsymbol": scrip_symbol(inst),
        "transactiontype": row.side,
        "exchange": row.exchange,
        "symboltoken": str(inst.instrument_token),
        "instrumenttype": _kind(inst),
        "strikeprice": float(inst.strike) if inst.strike else -1,
        "optiontype": inst.instrument_type if inst.instrument_type in ("CE", "PE") else "",
        "expirydate": format_expiry(expiry) if (expiry := angel_expiry(inst)) else "",
        "lotsize": str(inst.lot_size),
        "cancelsize": str(cancelled),
        "averageprice": float(row.average_price),
        "filledshares": str(row.filled_quantity),
        "unfilledshares": str(unfilled),
        "orderid": row.order_id,
        "text": row.status_message,
        "status": status,
        "orderstatus": status,
        "updatetime": _ist(row.updated_at),
        "exchtime": _ist(row.placed_at),
        "exchorderupdatetime": _ist(row.updated_at),
        "fillid": "",
        "filltime": "",
        "parentorderid": "",
        "ordertag": row.tag,
        "uniqueorderid": f"sim-{row.order_id}",
        "exchangeorderid": f"11{row.order_id[-14:]}",
    }


def position(row: PaperPosition, *, unrealised: Decimal) -> dict[str, Any]:
    """One row of `getPosition` (amounts as strings, as Angel sends them)."""
    inst = row.instrument
    buy_avg = row.buy_value / row.buy_quantity if row.buy_quantity else ZERO
    sell_avg = row.sell_value / row.sell_quantity if row.sell_quantity else ZERO
    return {
        "exchange": row.exchange,
        "symboltoken": str(inst.instrument_token),
        "producttype": vocab.PRODUCT_TO_ANGEL[Product(row.product)],
        "tradingsymbol": scrip_symbol(inst),
        "symbolname": _name(inst),
        "instrumenttype": _kind(inst),
        "priceden": "1",
        "pricenum": "1",
        "genden": "1",
        "gennum": "1",
        "precision": "2",
        "multiplier": "-1",
        "boardlotsize": "1",
        "buyqty": str(row.buy_quantity),
        "sellqty": str(row.sell_quantity),
        "buyamount": money(row.buy_value),
        "sellamount": money(row.sell_value),
        "symbolgroup": "XX",
        "strikeprice": money(inst.strike) if inst.strike else "-1",
        "optiontype": inst.instrument_type if inst.instrument_type in ("CE", "PE") else "",
        "expirydate": format_expiry(expiry) if (expiry := angel_expiry(inst)) else "",
        "lotsize": str(inst.lot_size),
        "cfbuyqty": "0",
        "cfsellqty": "0",
        "cfbuyamount": "0",
        "cfsellamount": "0",
        "buyavgprice": money(buy_avg),
        "sellavgprice": money(sell_avg),
        "avgnetprice": money(row.average_price),
        "netvalue": money(row.sell_value - row.buy_value),
        "netqty": str(row.quantity),
        "totalbuyvalue": money(row.buy_value),
        "totalsellvalue": money(row.sell_value),
        "cfbuyavgprice": "0",
        "cfsellavgprice": "0",
        "totalbuyavgprice": money(buy_avg),
        "totalsellavgprice": money(sell_avg),
        "netprice": money(row.average_price),
        "ltp": money(inst.last_price),
        "realised": money(row.realised_pnl),
        "unrealised": money(unrealised),
    }


def margin(estimate: MarginEstimate, *, benefit: Decimal) -> dict[str, Any]:
    return {
        "totalMarginRequired": float(estimate.total),
        "marginComponents": {
            "netPremium": float(estimate.option_premium),
            "spanMargin": float(estimate.span),
            "marginBenefit": float(benefit),
            "deliveryMargin": 0,
            "nonNFOMargin": 0,
            "totOptionsPremium": float(estimate.option_premium),
        },
    }
