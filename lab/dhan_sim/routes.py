"""The Dhan simulator's routes (the dhanhq 2.3.0 SDK's) over the paper exchange, paper rows as Dhan
JSON (docs: orders, portfolio, funds, instrument list), and the `/_sim/...` admin routes. Handlers
take a `Call` and return a `Response`, or raise `DhanError` / DhanAuthError / BrokerError."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from brokers.angel.scrip import INDEX_UNDERLYINGS, MONTHS, strike_text
from brokers.dhan import vocab
from brokers.paper.margin import money, portfolio_margin
from brokers.paper.models import PaperInstrument, PaperOrder, PaperPosition
from brokers.paper.selectors import (
    margin_rates,
    paper_funds,
    paper_position_list,
    request_leg,
    spot_prices,
    unrealised_pnl,
)
from brokers.paper.services import paper_order_cancel, paper_order_modify, paper_order_place
from brokers.types import (
    InstrumentKey,
    InstrumentType,
    MarginEstimate,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from lab.angel_sim.payloads import angel_expiry
from lab.dhan_sim.auth import SimToken
from lab.kite_sim.selectors import sim_instrument_list, sim_instruments_by_key, sim_order_list
from lab.kite_sim.wire import Request, Response

if TYPE_CHECKING:
    from lab.dhan_sim.server import DhanSim

IST = ZoneInfo("Asia/Kolkata")
ZERO = Decimal("0")
STATUS_TO_DHAN = {
    OrderStatus.PENDING: "TRANSIT",
    OrderStatus.OPEN: "PENDING",
    OrderStatus.TRIGGER_PENDING: "PENDING",
    OrderStatus.COMPLETE: "TRADED",
    OrderStatus.CANCELLED: "CANCELLED",
    OrderStatus.REJECTED: "REJECTED",
}
ERROR_TYPES = {
    "DH-901": "Invalid_Authentication",
    "DH-904": "Rate_Limit",
    "DH-905": "Input_Exception",
    "DH-906": "Order_Error",
    "DH-907": "Data_Error",
    "DH-908": "Internal_Server_Error",
    "DH-911": "Invalid_IP",
}


class DhanError(Exception):
    """A refusal in Dhan's shape: HTTP status and `{errorType, errorCode, errorMessage}`."""

    def __init__(self, code: str, message: str, *, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def ok(data: Any, status: int = 200) -> Response:
    return Response.json_body(data, status)


def refusal(code: str, message: str, status: int = 400) -> Response:
    return Response.json_body(
        {"errorType": ERROR_TYPES.get(code, "Others"), "errorCode": code, "errorMessage": message}, status
    )


@dataclass(frozen=True)
class Call:
    sim: DhanSim
    request: Request
    token: SimToken | None
    args: dict[str, str] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        assert self.token is not None
        return self.token.client_id

    def body(self) -> dict[str, Any]:
        data = self.request.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise DhanError("DH-905", "the body is not a JSON object")
        return data


Handler = Callable[[Call], Response]


# --- paper rows as Dhan's ---------------------------------------------------------------------------


def segment_of(row: PaperInstrument) -> str:
    return vocab.EXCHANGE_TO_SEGMENT.get(row.exchange, row.exchange)


def _name(row: PaperInstrument) -> str:
    if row.instrument_type in (InstrumentType.EQ, InstrumentType.INDEX):
        return row.tradingsymbol
    return (row.underlying or row.name).upper()


def dhan_symbol(row: PaperInstrument) -> str:
    """SEM_TRADING_SYMBOL: `NIFTY-Dec2025-FUT`, `NIFTY-Dec2025-24000-CE`, `SBIN`."""
    kind = InstrumentType(row.instrument_type)
    expiry = angel_expiry(row)
    if kind in (InstrumentType.EQ, InstrumentType.INDEX) or expiry is None:
        return row.tradingsymbol
    month = f"{MONTHS[expiry.month - 1].title()}{expiry.year}"
    if kind is InstrumentType.FUT:
        return f"{_name(row)}-{month}-FUT"
    return f"{_name(row)}-{month}-{strike_text(row.strike)}-{kind.value}"


def _instrument_name(row: PaperInstrument) -> str:
    index = _name(row) in INDEX_UNDERLYINGS
    return {
        InstrumentType.FUT: "FUTIDX" if index else "FUTSTK",
        InstrumentType.CE: "OPTIDX" if index else "OPTSTK",
        InstrumentType.PE: "OPTIDX" if index else "OPTSTK",
        InstrumentType.INDEX: "INDEX",
        InstrumentType.EQ: "EQUITY",
    }[InstrumentType(row.instrument_type)]


SEGMENT_LETTER = {
    "NSE": ("NSE", "E"),
    "NFO": ("NSE", "D"),
    "BSE": ("BSE", "E"),
    "BFO": ("BSE", "D"),
    "MCX": ("MCX", "M"),
    "CDS": ("NSE", "C"),
}
COLUMNS = (
    "SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME", "SEM_EXPIRY_CODE",
    "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL", "SEM_EXPIRY_DATE", "SEM_STRIKE_PRICE",
    "SEM_OPTION_TYPE", "SEM_TICK_SIZE", "SEM_EXPIRY_FLAG", "SEM_EXCH_INSTRUMENT_TYPE", "SEM_SERIES",
    "SM_SYMBOL_NAME",
)  # fmt: skip


def _monthly(row: PaperInstrument) -> bool:
    name = _name(row)
    return (
        re.fullmatch(
            rf"{re.escape(name)}\d\d(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC).*", row.tradingsymbol
        )
        is not None
    )


def scrip_row(row: PaperInstrument) -> dict[str, str] | None:
    where = SEGMENT_LETTER.get(row.exchange)
    if where is None:
        return None
    kind = InstrumentType(row.instrument_type)
    if kind is InstrumentType.INDEX:
        where = (where[0], "I")
    expiry = angel_expiry(row)
    derivative = kind in (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)
    return {
        "SEM_EXM_EXCH_ID": where[0],
        "SEM_SEGMENT": where[1],
        "SEM_SMST_SECURITY_ID": str(row.instrument_token),
        "SEM_INSTRUMENT_NAME": _instrument_name(row),
        "SEM_EXPIRY_CODE": "0",
        "SEM_TRADING_SYMBOL": dhan_symbol(row),
        "SEM_LOT_UNITS": f"{row.lot_size}.0",
        "SEM_CUSTOM_SYMBOL": row.tradingsymbol,
        "SEM_EXPIRY_DATE": f"{expiry:%Y-%m-%d} 14:30:00" if expiry else "",
        "SEM_STRIKE_PRICE": f"{row.strike:.5f}" if row.strike else "-0.01000",
        "SEM_OPTION_TYPE": kind.value if kind in (InstrumentType.CE, InstrumentType.PE) else "XX",
        "SEM_TICK_SIZE": f"{row.tick_size * 100:.4f}",
        "SEM_EXPIRY_FLAG": ("M" if _monthly(row) else "W") if derivative else "NA",
        "SEM_EXCH_INSTRUMENT_TYPE": _instrument_name(row),
        "SEM_SERIES": "EQ" if kind is InstrumentType.EQ else "NA",
        "SM_SYMBOL_NAME": _name(row),
    }


def _ist(moment: Any) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def order_row(row: PaperOrder) -> dict[str, Any]:
    """One row of `GET /orders` (docs: Order Book)."""
    inst = row.instrument
    status = OrderStatus(row.status)
    dhan_status = STATUS_TO_DHAN[status]
    if status is OrderStatus.OPEN and row.filled_quantity:
        dhan_status = "PART_TRADED"
    final = status.is_final
    kind = InstrumentType(inst.instrument_type)
    return {
        "dhanClientId": row.account.user_id,
        "orderId": row.order_id,
        "correlationId": row.tag,
        "orderStatus": dhan_status,
        "transactionType": row.side,
        "exchangeSegment": segment_of(inst),
        "productType": vocab.PRODUCT_TO_DHAN[Product(row.product)],
        "orderType": vocab.ORDER_TYPE_TO_DHAN[OrderType(row.order_type)],
        "validity": vocab.VALIDITY_TO_DHAN.get(Validity(row.validity), "DAY"),
        "tradingSymbol": dhan_symbol(inst),
        "securityId": str(inst.instrument_token),
        "quantity": row.quantity,
        "disclosedQuantity": 0,
        "price": float(row.price),
        "triggerPrice": float(row.trigger_price),
        "afterMarketOrder": False,
        "createTime": _ist(row.placed_at),
        "updateTime": _ist(row.updated_at),
        "exchangeTime": _ist(row.placed_at),
        "drvExpiryDate": f"{e:%Y-%m-%d}" if (e := angel_expiry(inst)) else None,
        "drvOptionType": {"CE": "CALL", "PE": "PUT"}.get(kind.value),
        "drvStrikePrice": float(inst.strike or 0),
        "omsErrorCode": "DH-906" if status is OrderStatus.REJECTED else None,
        "omsErrorDescription": row.status_message or None,
        "algoId": "",
        "remainingQuantity": 0 if final else row.quantity - row.filled_quantity,
        "averageTradedPrice": float(row.average_price),
        "filledQty": row.filled_quantity,
    }


def order_alert(row: PaperOrder) -> dict[str, Any]:
    """The order-update WebSocket's message (docs: Live Order Update)."""
    inst = row.instrument
    exch, seg = SEGMENT_LETTER.get(inst.exchange, (inst.exchange, "E"))
    status = OrderStatus(row.status)
    words = {
        "TRANSIT": "Transit",
        "PENDING": "Pending",
        "TRADED": "Traded",
        "CANCELLED": "Cancelled",
        "REJECTED": "Rejected",
    }
    return {
        "Data": {
            "Exchange": exch,
            "Segment": seg,
            "Source": "P" if row.tag else "N",
            "SecurityId": str(inst.instrument_token),
            "ClientId": row.account.user_id,
            "ExchOrderNo": f"14{row.order_id[-14:]}",
            "OrderNo": row.order_id,
            "Product": {"MIS": "I", "NRML": "M", "CNC": "C", "MTF": "F"}[row.product],
            "TxnType": row.side[0],
            "OrderType": {"MARKET": "MKT", "LIMIT": "LMT", "SL": "SL", "SL-M": "SLM"}[row.order_type],
            "Validity": row.validity,
            "RemainingQuantity": 0 if status.is_final else row.quantity - row.filled_quantity,
            "Quantity": row.quantity,
            "TradedQty": row.filled_quantity,
            "Price": float(row.price),
            "TriggerPrice": float(row.trigger_price),
            "TradedPrice": float(row.average_price),
            "AvgTradedPrice": float(row.average_price),
            "OrderDateTime": _ist(row.placed_at),
            "ExchOrderTime": _ist(row.placed_at),
            "LastUpdatedTime": _ist(row.updated_at),
            "ReasonDescription": row.status_message or "CONFIRMED",
            "Instrument": _instrument_name(inst),
            "Symbol": dhan_symbol(inst),
            "ProductName": vocab.PRODUCT_TO_DHAN[Product(row.product)],
            "Status": words[STATUS_TO_DHAN[status]],
            "LotSize": inst.lot_size,
            "CorrelationId": row.tag,
        },
        "Type": "order_alert",
    }


def position_row(row: PaperPosition, *, unrealised: Decimal) -> dict[str, Any]:
    inst = row.instrument
    buy_avg = row.buy_value / row.buy_quantity if row.buy_quantity else ZERO
    sell_avg = row.sell_value / row.sell_quantity if row.sell_quantity else ZERO
    quantity = row.quantity
    return {
        "dhanClientId": row.account.user_id,
        "tradingSymbol": dhan_symbol(inst),
        "securityId": str(inst.instrument_token),
        "positionType": "LONG" if quantity > 0 else "SHORT" if quantity < 0 else "CLOSED",
        "exchangeSegment": segment_of(inst),
        "productType": vocab.PRODUCT_TO_DHAN[Product(row.product)],
        "buyAvg": float(money(buy_avg)),
        "buyQty": row.buy_quantity,
        "costPrice": float(money(row.average_price)),
        "sellAvg": float(money(sell_avg)),
        "sellQty": row.sell_quantity,
        "netQty": quantity,
        "realizedProfit": float(money(row.realised_pnl)),
        "unrealizedProfit": float(money(unrealised)),
        "rbiReferenceRate": 1.0,
        "multiplier": 1,
        "dayBuyQty": row.buy_quantity,
        "daySellQty": row.sell_quantity,
        "dayBuyValue": float(money(row.buy_value)),
        "daySellValue": float(money(row.sell_value)),
        "drvExpiryDate": f"{e:%Y-%m-%d}" if (e := angel_expiry(inst)) else "0001-01-01",
        "drvOptionType": None,
        "drvStrikePrice": float(inst.strike or 0),
        "crossCurrency": False,
    }


# --- handlers ---------------------------------------------------------------------------------------


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        raise DhanError("DH-905", f"Missing required field {name}")
    return str(value).strip()


def _decimal(body: dict[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise DhanError("DH-905", f"invalid {name}") from None
    return number if number.is_finite() and number > 0 else None


def _quantity(body: dict[str, Any]) -> int:
    try:
        quantity = int(Decimal(_field(body, "quantity")))
    except InvalidOperation:
        raise DhanError("DH-905", "invalid quantity") from None
    if quantity <= 0:
        raise DhanError("DH-905", "invalid quantity")
    return quantity


def _instrument(sim: DhanSim, body: dict[str, Any]) -> PaperInstrument:
    row = sim.instruments_by_security().get(
        (_field(body, "exchangeSegment").upper(), _field(body, "securityId"))
    )
    if row is None:
        raise DhanError("DH-905", "Invalid SecurityId")
    return row


def login(call: Call) -> Response:
    query = call.request.query
    client_id = (query.get("dhanClientId") or [""])[0]
    if call.sim.login_refused(client_id):
        raise DhanError("DH-901", "Invalid TOTP", status=401)
    token = call.sim.store.login(
        client_id=client_id, pin=(query.get("pin") or [""])[0], totp=(query.get("totp") or [""])[0]
    )
    return ok(
        {
            "dhanClientId": token.client_id,
            "dhanClientName": f"SIMULATED {token.client_id}",
            "dhanClientUcc": "SIM0000000",
            "givenPowerOfAttorney": False,
            "accessToken": token.access_token,
            "expiryTime": token.expires_at.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S.000"),
        }
    )


def profile(call: Call) -> Response:
    token = call.token
    assert token is not None
    return ok(
        {
            "dhanClientId": token.client_id,
            "tokenValidity": _ist(token.expires_at),
            "activeSegment": "Equity, Derivative",
        }
    )


def fundlimit(call: Call) -> Response:
    funds = paper_funds(user_id=call.client_id)
    return ok(
        {
            "dhanClientId": call.client_id,
            "availabelBalance": float(money(funds.available)),
            "sodLimit": float(money(funds.available + funds.used)),
            "collateralAmount": 0.0,
            "receiveableAmount": 0.0,
            "utilizedAmount": float(money(funds.used)),
            "blockedPayoutAmount": 0.0,
            "withdrawableBalance": float(money(funds.available)),
        }
    )


def orders(call: Call) -> Response:
    return ok([order_row(r) for r in sim_order_list(user_id=call.client_id) if call.sim.visible(r.order_id)])


def order_by_id(call: Call) -> Response:
    found = [
        order_row(r)
        for r in sim_order_list(user_id=call.client_id)
        if r.order_id == call.args["id"] and call.sim.visible(r.order_id)
    ]
    return ok(found)  # measured: an unknown id is 200 []


def order_by_correlation(call: Call) -> Response:
    wanted = call.args["id"]
    for row in sim_order_list(user_id=call.client_id):
        if row.tag == wanted and call.sim.visible(row.order_id):
            return ok(order_row(row))
    raise DhanError("DH-907", "No data present", status=404)


def positions(call: Call) -> Response:
    return ok(
        [
            position_row(row, unrealised=money(unrealised_pnl(row)))
            for row in paper_position_list(user_id=call.client_id)
        ]
    )


def ltp(call: Call) -> Response:
    by_security = call.sim.instruments_by_security()
    data: dict[str, dict[str, Any]] = {}
    for segment, ids in call.body().items():
        if segment == "dhanClientId" or not isinstance(ids, list):
            continue
        for security_id in ids:
            row = by_security.get((str(segment).upper(), str(security_id)))
            if row is not None:
                data.setdefault(str(segment).upper(), {})[str(security_id)] = {
                    "last_price": float(row.last_price)
                }
    return ok({"data": data, "status": "success"})


def _request(sim: DhanSim, leg: dict[str, Any]) -> OrderRequest:
    row = _instrument(sim, leg)
    try:
        product = vocab.PRODUCT_FROM_DHAN[_field(leg, "productType").upper()]
        side = Side(_field(leg, "transactionType").upper())
    except (KeyError, ValueError):
        raise DhanError("DH-905", "invalid productType or transactionType") from None
    price = _decimal(leg, "price")
    return OrderRequest(
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        side=side,
        quantity=_quantity(leg),
        product=product,
        order_type=OrderType.LIMIT if price else OrderType.MARKET,
        price=price,
    )


def _legs_margin(requests: list[OrderRequest]) -> MarginEstimate:
    keys = [InstrumentKey(r.exchange, r.tradingsymbol) for r in requests]
    instruments = sim_instruments_by_key(keys)
    spots = spot_prices(i.underlying for i in instruments.values() if i.is_option)
    breakdown = portfolio_margin([request_leg(r, instruments, spots) for r in requests], margin_rates())
    return MarginEstimate(total=breakdown.total, span=breakdown.span, option_premium=breakdown.option_premium)


def margin_single(call: Call) -> Response:
    estimate = _legs_margin([_request(call.sim, call.body())])
    available = paper_funds(user_id=call.client_id).available
    return ok(
        {
            "totalMargin": float(money(estimate.total)),
            "spanMargin": float(money(estimate.span)),
            "exposureMargin": float(money(estimate.total - estimate.span - estimate.option_premium)),
            "availableBalance": float(money(available)),
            "variableMargin": 0.0,
            "insufficientBalance": float(money(max(ZERO, estimate.total - available))),
            "brokerage": 20.0,
            "leverage": "1.00",
        }
    )


def _position_requests(client_id: str) -> list[OrderRequest]:
    held = []
    for row in paper_position_list(user_id=client_id):
        if row.quantity:
            held.append(
                OrderRequest(
                    exchange=row.exchange,
                    tradingsymbol=row.tradingsymbol,
                    side=Side.BUY if row.quantity > 0 else Side.SELL,
                    quantity=abs(row.quantity),
                    product=Product(row.product),
                    order_type=OrderType.MARKET,
                )
            )
    return held


def margin_multi(call: Call) -> Response:
    body = call.body()
    legs = body.get("scripList", body.get("scripts"))
    if not isinstance(legs, list) or not legs:
        raise DhanError("DH-905", "scripList is mandatory")
    requests = [_request(call.sim, leg) for leg in legs if isinstance(leg, dict)]
    if body.get("includePosition"):
        held = _position_requests(call.client_id)
        before = _legs_margin(held).total if held else ZERO
        estimate = _legs_margin(held + requests)
        total = estimate.total - before
    else:
        estimate = _legs_margin(requests)
        total = estimate.total
    alone = sum((_legs_margin([r]).total for r in requests), ZERO)
    return ok(
        {
            "total_margin": str(money(total)),
            "span_margin": str(money(estimate.span)),
            "exposure_margin": str(
                money(max(ZERO, estimate.total - estimate.span - estimate.option_premium))
            ),
            "equity_margin": "0.00",
            "fo_margin": str(money(total)),
            "commodity_margin": "0.00",
            "currency": "INR",
            "hedge_benefit": str(money(max(ZERO, alone - total))),
        }
    )


def _tag(body: dict[str, Any]) -> str:
    tag = str(body.get("correlationId") or "")
    if len(tag) > 30 or (tag and re.fullmatch(r"[A-Za-z0-9 _-]+", tag) is None):
        raise DhanError("DH-905", "correlationId: at most 30 of [a-zA-Z0-9 _-]")
    return tag


def place(call: Call) -> Response:
    body = call.body()
    sim = call.sim
    if str(body.get("dhanClientId") or "") != call.client_id:
        raise DhanError("DH-905", "dhanClientId does not match the access token")
    row = _instrument(sim, body)
    try:
        order_type = vocab.ORDER_TYPE_FROM_DHAN[_field(body, "orderType").upper()]
        product = vocab.PRODUCT_FROM_DHAN[_field(body, "productType").upper()]
        validity = vocab.VALIDITY_FROM_DHAN[str(body.get("validity") or "DAY").upper()]
        side = Side(_field(body, "transactionType").upper())
    except (KeyError, ValueError):
        raise DhanError("DH-905", "invalid orderType, productType, validity or transactionType") from None
    tag = _tag(body)
    quantity = _quantity(body)
    price = _decimal(body, "price")
    trigger = _decimal(body, "triggerPrice")
    sim.order_write_gate(call.client_id)
    order = paper_order_place(
        user_id=call.client_id,
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        side=side.value,
        quantity=quantity,
        product=product.value,
        order_type=order_type.value,
        price=price if order_type in (OrderType.LIMIT, OrderType.SL) else None,
        trigger_price=trigger,
        validity=validity.value,
        tag=tag,
    )
    sim.after_accept(call.client_id, order_id=order.order_id, placed=True)
    return ok({"orderId": order.order_id, "orderStatus": "TRANSIT"})


def modify(call: Call) -> Response:
    body = call.body()
    order_id = call.args["id"]
    try:
        order_type = vocab.ORDER_TYPE_FROM_DHAN[_field(body, "orderType").upper()]
    except KeyError:
        raise DhanError("DH-905", "invalid orderType") from None
    quantity = _quantity(body)
    price = _decimal(body, "price")
    trigger = _decimal(body, "triggerPrice")
    call.sim.order_write_gate(call.client_id)
    order = paper_order_modify(
        user_id=call.client_id,
        order_id=order_id,
        quantity=quantity,
        price=price,
        trigger_price=trigger,
        order_type=order_type.value,
    )
    call.sim.after_accept(call.client_id, order_id=order.order_id, placed=False)
    return ok({"orderId": order.order_id, "orderStatus": "TRANSIT"})


def cancel(call: Call) -> Response:
    call.sim.order_write_gate(call.client_id)
    order = paper_order_cancel(user_id=call.client_id, order_id=call.args["id"])
    call.sim.after_accept(call.client_id, order_id=order.order_id, placed=False)
    return ok({"orderId": order.order_id, "orderStatus": "CANCELLED"}, 202)


def scrip_master(call: Call) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sim_instrument_list():
        if row.tradingsymbol in call.sim.unlisted:
            continue
        line = scrip_row(row)
        if line is not None:
            writer.writerow(line)
    return Response(status=200, body=out.getvalue().encode(), content_type="text/csv")


def admin_health(call: Call) -> Response:
    return ok({"status": "ok", "ws_root": call.sim.ws_root})


def admin_clients(call: Call) -> Response:
    body = call.body()
    client = call.sim.store.register(
        client_id=_field(body, "client_id"),
        pin=str(body.get("pin") or ""),
        totp_secret=str(body.get("totp_secret") or ""),
        api_key=str(body.get("api_key") or ""),
    )
    return ok(
        {
            "client_id": client.client_id,
            "pin": client.pin,
            "totp_secret": client.totp_secret,
            "api_key": client.api_key,
        }
    )


def admin_faults(call: Call) -> Response:
    body = dict(call.body())
    client_id = body.pop("client_id", None)
    return ok(call.sim.set_faults(client_id=client_id, **body))


def admin_faults_clear(call: Call) -> Response:
    call.sim.clear_faults()
    return ok({"status": "cleared"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True
    admin: bool = False


def _route(method: str, path: str, handler: Handler, *, auth: bool = True, admin: bool = False) -> Route:
    pattern = re.compile(re.escape(path).replace(r"\{id\}", r"(?P<id>[^/]+)"))
    return Route(method, path, pattern, handler, auth=auth, admin=admin)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/app/generateAccessToken", login, auth=False),
    _route("GET", "/v2/profile", profile),
    _route("GET", "/v2/fundlimit", fundlimit),
    _route("GET", "/v2/orders/external/{id}", order_by_correlation),
    _route("GET", "/v2/orders", orders),
    _route("GET", "/v2/orders/{id}", order_by_id),
    _route("POST", "/v2/orders", place),
    _route("PUT", "/v2/orders/{id}", modify),
    _route("DELETE", "/v2/orders/{id}", cancel),
    _route("GET", "/v2/positions", positions),
    _route("POST", "/v2/marketfeed/ltp", ltp),
    _route("POST", "/v2/margincalculator", margin_single),
    _route("POST", "/v2/margincalculator/multi", margin_multi),
    _route("GET", "/api-data/api-scrip-master.csv", scrip_master, auth=False, admin=True),
    _route("GET", "/_sim/health", admin_health, auth=False, admin=True),
    _route("POST", "/_sim/clients", admin_clients, auth=False, admin=True),
    _route("POST", "/_sim/faults", admin_faults, auth=False, admin=True),
    _route("DELETE", "/_sim/faults", admin_faults_clear, auth=False, admin=True),
)
WRITES = frozenset({"POST /v2/orders", "PUT /v2/orders/{id}", "DELETE /v2/orders/{id}"})


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    path = "/" + path.lstrip("/")
    path = path.rstrip("/") or "/"
    for route in ROUTES:
        if route.method == method:
            match = route.pattern.fullmatch(path)
            if match:
                return route, match.groupdict()
    return None
