"""The Alice Blue simulator's routes (Ant-A3 TradeHub 1.1.7's `ServiceProps`) over the paper
exchange, and the `/_sim/...` admin routes. Handlers take a `Call` and return a `Response`, or
raise `AliceError` / AliceAuthError / brokers.errors.BrokerError (the server shapes the envelope)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from brokers.alice import vocab
from brokers.paper.margin import money
from brokers.paper.selectors import (
    paper_basket_margin,
    paper_funds,
    paper_order_margins,
    paper_position_list,
    unrealised_pnl,
)
from brokers.paper.services import paper_order_cancel, paper_order_modify, paper_order_place
from brokers.types import OrderRequest, OrderType, Side
from lab.alice_sim import payloads
from lab.kite_sim.selectors import sim_instrument_list, sim_order_get, sim_order_list
from lab.kite_sim.wire import Request, Response

if TYPE_CHECKING:
    from lab.alice_sim.server import AliceSim

TAG_MAX = 50  # EC971
ALGO_ID_MAX = 12  # EC972


class AliceError(Exception):
    """A refusal in Alice Blue's envelope (`status: "Not_ok"`, `message: "EC…"`)."""

    def __init__(self, code: str, message: str, *, http_status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def ok(result: Any) -> Response:
    return Response.json_body({"status": "Ok", "message": "Success", "result": result})


def refusal(code: str, message: str, http_status: int = 200) -> Response:
    return Response.json_body(
        {"status": "Not_ok", "message": f"{code}: {message}", "result": []}, http_status
    )


@dataclass(frozen=True)
class Call:
    sim: AliceSim
    request: Request
    user_id: str
    args: tuple[str, ...] = ()

    def body(self) -> Any:
        return self.request.json()

    def obj(self) -> dict[str, Any]:
        data = self.body()
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise AliceError("EC914", "'Request parameter' cannot be empty or null.")
        return data


Handler = Callable[[Call], Response]


def _field(body: dict[str, Any], name: str, code: str) -> str:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        raise AliceError(code, f"'{name}' cannot be empty or null.")
    return str(value).strip()


def _decimal(body: dict[str, Any], name: str, code: str = "EC957") -> Decimal | None:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise AliceError(code, f"Invalid '{name}'.") from None
    return number if number.is_finite() else None


def _quantity(body: dict[str, Any]) -> int:
    try:
        quantity = int(Decimal(_field(body, "quantity", "EC903")))
    except InvalidOperation:
        raise AliceError("EC904", "'quantity' should be a positive number.") from None
    if quantity <= 0:
        raise AliceError("EC904", "'quantity' should be a positive number.")
    return quantity


def _instrument(call: Call, body: dict[str, Any]) -> Any:
    exchange = _field(body, "exchange", "EC900").upper()
    token = _field(body, "instrumentId", "EC941")
    if not token.isdigit():
        raise AliceError("EC946", "Invalid 'instrumentId'. It must contain only numeric characters.")
    row = call.sim.instruments_by_token().get((exchange, token))
    if row is None:
        raise AliceError("EC947", "'instrumentId' does not exist.")
    return row


def _words(body: dict[str, Any]) -> tuple[Any, Any, Any]:
    try:
        order_type = vocab.ORDER_TYPE_FROM_ALICE[_field(body, "orderType", "EC934").upper()]
    except KeyError:
        raise AliceError(
            "EC930", "'orderType' should be one of the following values: {'LIMIT', 'MARKET', 'SL', 'SLM'}."
        ) from None
    try:
        product = vocab.PRODUCT_FROM_ALICE[_field(body, "product", "EC906").upper()]
    except KeyError:
        raise AliceError(
            "EC092", "'product' should be one of the following values: {'INTRADAY', 'LONGTERM', 'MTF'}."
        ) from None
    try:
        validity = vocab.VALIDITY_FROM_ALICE[str(body.get("validity") or "DAY").strip().upper()]
    except KeyError:
        raise AliceError(
            "EC932", "'validity' should be one of the following values: {'DAY', 'IOC'}."
        ) from None
    return order_type, product, validity


# --- login, profile, limits ------------------------------------------------------------------------


def vendor_login(call: Call) -> Response:
    body = call.obj()
    user_id, token = call.sim.store.login(str(body.get("checkSum") or ""))
    return Response.json_body({"stat": "Ok", "clientId": user_id, "userSession": token})


def profile(call: Call) -> Response:
    return ok(
        [{"clientId": call.user_id, "clientName": f"Simulated {call.user_id}", "exchanges": ["NSE", "NFO"]}]
    )


def limits(call: Call) -> Response:
    return ok([payloads.limits(paper_funds(user_id=call.user_id))])


def order_book(call: Call) -> Response:
    rows = [
        payloads.order(r, user_id=call.user_id)
        for r in sim_order_list(user_id=call.user_id)
        if call.sim.visible(r.order_id)
    ]
    if not rows:
        raise AliceError("EC916", "No orders found for this user.")
    return ok(rows)


def positions(call: Call) -> Response:
    rows = [
        payloads.position(row, unrealised=money(unrealised_pnl(row)))
        for row in paper_position_list(user_id=call.user_id)
    ]
    if not rows:
        raise AliceError("EC920", "No positions found for this user.")
    return ok(rows)


def ws_token(call: Call) -> Response:
    """`createWsToken`: the token the order feed's first message carries."""
    return ok([{"orderToken": call.sim.feed.issue(call.user_id)}])


# --- margins ----------------------------------------------------------------------------------------


def _request_from_order(call: Call, body: dict[str, Any]) -> OrderRequest:
    row = _instrument(call, body)
    order_type, product, validity = _words(body)
    side = _field(body, "transactionType", "EC907").upper()
    if side not in ("BUY", "SELL"):
        raise AliceError("EC929", "'transactionType' should be one of the following values: {'BUY', 'SELL'}.")
    return OrderRequest(
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        side=Side(side),
        quantity=_quantity(body),
        product=product,
        order_type=order_type,
        price=_decimal(body, "price") or None,
        trigger_price=_decimal(body, "slTriggerPrice", "EC959") or None,
        validity=validity,
    )


def check_margin(call: Call) -> Response:
    req = _request_from_order(call, call.obj())
    estimate = paper_order_margins(user_id=call.user_id, requests=[req])[0]
    return ok([payloads.margin(estimate.total, paper_funds(user_id=call.user_id).available)])


BASKET_PRICE_TYPES = {value: key for key, value in vocab.BASKET_PRICE_TYPE.items()}
BASKET_PRODUCTS = {value: key for key, value in vocab.BASKET_PRODUCT.items()}


def basket_margin(call: Call) -> Response:
    legs = call.body()
    if not isinstance(legs, list) or not legs:
        raise AliceError("EC914", "'Request parameter' cannot be empty or null.")
    by_symbol = call.sim.instruments_by_symbol()
    requests = []
    for leg in legs:
        if not isinstance(leg, dict):
            raise AliceError("EC914", "'Request parameter' cannot be empty or null.")
        exchange = _field(leg, "exchange", "EC900").upper()
        row = by_symbol.get((exchange, _field(leg, "tradingSymbol", "EC902").upper()))
        if row is None:
            raise AliceError("EC947", "'instrumentId' does not exist.")
        try:
            order_type = BASKET_PRICE_TYPES[_field(leg, "priceType", "EC933").upper()]
            product = BASKET_PRODUCTS[_field(leg, "product", "EC936").upper()]
            side = {"B": Side.BUY, "S": Side.SELL}[_field(leg, "transType", "EC907").upper()[:1]]
        except KeyError:
            raise AliceError("EC938", "invalid basket leg") from None
        requests.append(
            OrderRequest(
                exchange=row.exchange,
                tradingsymbol=row.tradingsymbol,
                side=side,
                quantity=_quantity({"quantity": leg.get("qty")}),
                product=product,
                order_type=order_type,
                price=_decimal(leg, "price") or None,
            )
        )
    estimate = paper_basket_margin(user_id=call.user_id, requests=requests)
    return ok([payloads.margin(estimate.total, paper_funds(user_id=call.user_id).available)])


# --- writes ---------------------------------------------------------------------------------------


def place_order(call: Call) -> Response:
    body = call.body()
    if not isinstance(body, list) or not body:
        raise AliceError("EC914", "'Request parameter' cannot be empty or null.")  # an array, per the docs
    sim = call.sim
    results = []
    for item in body:
        if not isinstance(item, dict):
            raise AliceError("EC914", "'Request parameter' cannot be empty or null.")
        req = _request_from_order(call, item)
        tag = str(item.get("orderTag") or "")
        if len(tag) > TAG_MAX:
            raise AliceError("EC971", "'orderTag' should not exceed 50 characters")
        if len(str(item.get("algoId") or "")) > ALGO_ID_MAX:
            raise AliceError("EC972", "'algoId' should not exceed 12 characters.")
        if _field(item, "orderComplexity", "EC942").upper() not in ("REGULAR", "AMO"):
            raise AliceError(
                "EC091", "'orderComplexity' should be one of the following values: {'REGULAR', 'AMO'}."
            )
        if req.order_type in (OrderType.LIMIT, OrderType.SL) and req.price is None:
            raise AliceError("EC950", "'price' is required and cannot be empty or null.")
        if req.order_type in (OrderType.SL, OrderType.SLM) and req.trigger_price is None:
            raise AliceError("EC951", "'slTriggerPrice' is required and cannot be empty or null.")
        protection = _decimal(item, "marketProtectionPercent", "EC988")
        if protection is not None and protection <= 0:
            raise AliceError("EC988", "'marketProtection' should be a positive number.")
        sim.order_write_gate(call.user_id)
        order = paper_order_place(
            user_id=call.user_id,
            exchange=req.exchange,
            tradingsymbol=req.tradingsymbol,
            side=req.side.value,
            quantity=req.quantity,
            product=req.product.value,
            order_type=req.order_type.value,
            price=req.price,
            trigger_price=req.trigger_price,
            validity=req.validity.value,
            tag=tag,
        )
        sim.record_protection(order.order_id, protection)
        sim.after_accept(call.user_id, order_id=order.order_id, placed=True)
        results.append({"requestTime": payloads._ist(order.placed_at), "brokerOrderId": order.order_id})
    return ok(results)


def modify_order(call: Call) -> Response:
    body = call.obj()
    order_id = _field(body, "brokerOrderId", "EC945")
    current = sim_order_get(user_id=call.user_id, order_id=order_id)
    order_type_text = str(body.get("orderType") or "").strip().upper()
    try:
        order_type = (
            vocab.ORDER_TYPE_FROM_ALICE[order_type_text] if order_type_text else OrderType(current.order_type)
        )
    except KeyError:
        raise AliceError(
            "EC930", "'orderType' should be one of the following values: {'LIMIT', 'MARKET', 'SL', 'SLM'}."
        ) from None
    quantity = _quantity(body) if str(body.get("quantity") or "").strip() else current.quantity
    price = _decimal(body, "price")
    trigger = _decimal(body, "slTriggerPrice", "EC959")
    call.sim.order_write_gate(call.user_id)
    order = paper_order_modify(
        user_id=call.user_id,
        order_id=order_id,
        quantity=quantity,
        price=price if price else None,
        trigger_price=trigger if trigger else None,
        order_type=order_type.value,
    )
    call.sim.after_accept(call.user_id, order_id=order.order_id, placed=False)
    return ok([{"brokerOrderId": order.order_id, "requestTime": payloads._ist(order.updated_at)}])


def cancel_order(call: Call) -> Response:
    order_id = _field(call.obj(), "brokerOrderId", "EC945")
    call.sim.order_write_gate(call.user_id)
    order = paper_order_cancel(user_id=call.user_id, order_id=order_id)
    call.sim.after_accept(call.user_id, order_id=order.order_id, placed=False)
    return ok([{"brokerOrderId": order.order_id, "requestTime": payloads._ist(order.updated_at)}])


# --- the contract master and the admin routes ----------------------------------------------------


def contract_master(call: Call) -> Response:
    exchange = call.args[0].upper()
    rows = [
        row
        for row in sim_instrument_list()
        if row.exchange == exchange and row.tradingsymbol not in call.sim.unlisted
    ]
    return Response(status=200, body=payloads.contract_csv(rows).encode(), content_type="text/csv")


def admin_health(call: Call) -> Response:
    return Response.json_body({"status": "ok"})


def admin_clients(call: Call) -> Response:
    """Register a client: `{user_id, app_code?, api_secret?}`; answers its secrets and an auth code."""
    body = call.obj()
    client = call.sim.store.register(
        user_id=_field(body, "user_id", "EC914"),
        app_code=str(body.get("app_code") or ""),
        api_secret=str(body.get("api_secret") or ""),
    )
    return Response.json_body(
        {
            "user_id": client.user_id,
            "app_code": client.app_code,
            "api_secret": client.api_secret,
            "auth_code": call.sim.store.auth_code(client.user_id),
        }
    )


def admin_auth_code(call: Call) -> Response:
    """What Alice Blue's login page would hand the app's redirect: `{user_id}` -> `{authCode, userId}`."""
    user_id = _field(call.obj(), "user_id", "EC914")
    return Response.json_body({"authCode": call.sim.store.auth_code(user_id), "userId": user_id.upper()})


def admin_faults(call: Call) -> Response:
    body = dict(call.obj())
    user_id = body.pop("user_id", None)
    return Response.json_body(call.sim.set_faults(user_id=user_id, **body))


def admin_faults_clear(call: Call) -> Response:
    call.sim.clear_faults()
    return Response.json_body({"status": "cleared"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True
    admin: bool = False


def _route(
    method: str, path: str, handler: Handler, *, auth: bool = True, admin: bool = False, pattern: str = ""
) -> Route:
    return Route(method, path, re.compile(pattern or re.escape(path)), handler, auth=auth, admin=admin)


OD = "/open-api/od/v1"
CONTRACTS = "/restpy/static/contract_master/V2"
ROUTES: tuple[Route, ...] = (
    _route("POST", f"{OD}/vendor/getUserDetails", vendor_login, auth=False),
    _route("GET", f"{OD}/profile", profile),
    _route("GET", f"{OD}/limits", limits),
    _route("GET", f"{OD}/positions", positions),
    _route("GET", f"{OD}/orders/book", order_book),
    _route("POST", f"{OD}/orders/placeorder", place_order),
    _route("POST", f"{OD}/orders/modify", modify_order),
    _route("POST", f"{OD}/orders/cancel", cancel_order),
    _route("POST", f"{OD}/orders/checkMargin", check_margin),
    _route("POST", f"{OD}/orders/basket/margin", basket_margin),
    _route("GET", "/open-api/order-notify/ws/createWsToken", ws_token),
    _route(
        "GET",
        CONTRACTS,
        contract_master,
        auth=False,
        admin=True,
        pattern=re.escape(CONTRACTS) + r"/([A-Za-z]+)\.csv",
    ),
    _route("GET", "/_sim/health", admin_health, auth=False, admin=True),
    _route("POST", "/_sim/clients", admin_clients, auth=False, admin=True),
    _route("POST", "/_sim/auth-code", admin_auth_code, auth=False, admin=True),
    _route("POST", "/_sim/faults", admin_faults, auth=False, admin=True),
    _route("DELETE", "/_sim/faults", admin_faults_clear, auth=False, admin=True),
)
WRITES = frozenset({f"{OD}/orders/placeorder", f"{OD}/orders/modify", f"{OD}/orders/cancel"})


def resolve(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    path = "/" + path.lstrip("/")
    path = path.rstrip("/") or "/"
    for route in ROUTES:
        if route.method == method:
            match = route.pattern.fullmatch(path)
            if match:
                return route, match.groups()
    return None


def new_feed_token() -> str:
    return secrets.token_urlsafe(18)
