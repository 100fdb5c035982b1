"""The Angel simulator's routes (SmartConnect._routes of smartapi-python 1.5.5) over the paper
exchange, and the `/_sim/...` admin routes. Handlers take a `Call` and return a `Response`, or
raise `AngelError` / AngelAuthError / brokers.errors.BrokerError (the server shapes the envelope)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from brokers.angel import vocab
from brokers.paper.margin import money, portfolio_margin
from brokers.paper.selectors import (
    margin_rates,
    paper_funds,
    paper_position_list,
    request_leg,
    spot_prices,
    unrealised_pnl,
)
from brokers.paper.services import paper_order_cancel, paper_order_modify, paper_order_place
from brokers.types import InstrumentKey, MarginEstimate, OrderRequest, Side
from lab.angel_sim import payloads
from lab.angel_sim.auth import SimSession
from lab.kite_sim.selectors import sim_instrument_list, sim_instruments_by_key, sim_order_list
from lab.kite_sim.wire import Request, Response

if TYPE_CHECKING:
    from lab.angel_sim.server import AngelSim


class AngelError(Exception):
    """A refusal in Angel's envelope (`status: false`, `errorcode`), HTTP 200 unless `http_status`."""

    def __init__(self, code: str, message: str, *, http_status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def ok(data: Any) -> Response:
    return Response.json_body({"status": True, "message": "SUCCESS", "errorcode": "", "data": data})


def refusal(code: str, message: str, http_status: int = 200) -> Response:
    return Response.json_body(
        {"status": False, "message": message, "errorcode": code, "data": None}, http_status
    )


@dataclass(frozen=True)
class Call:
    sim: AngelSim
    request: Request
    session: SimSession | None
    args: dict[str, str] = field(default_factory=dict)

    @property
    def client_code(self) -> str:
        assert self.session is not None
        return self.session.client_code

    def body(self) -> dict[str, Any]:
        data = self.request.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise AngelError("AB1004", "Something Went Wrong, Please Try After Sometime")
        return data


Handler = Callable[[Call], Response]


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        raise AngelError("AB4000", f"{name} is mandatory")
    return str(value).strip()


def _decimal(body: dict[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise AngelError("AB4000", f"invalid {name}") from None
    return number if number.is_finite() else None


def _quantity(body: dict[str, Any]) -> int:
    try:
        quantity = int(Decimal(_field(body, "quantity")))
    except InvalidOperation:
        raise AngelError("AB4000", "invalid quantity") from None
    if quantity <= 0:
        raise AngelError("AB4000", "invalid quantity")
    return quantity


# --- login ----------------------------------------------------------------------------------------


def login(call: Call) -> Response:
    body = call.body()
    if call.sim.faults_login_refused(str(body.get("clientcode") or "")):
        raise AngelError("AB1050", "Invalid totp")
    session = call.sim.store.login(
        api_key=call.request.header("x-privatekey") or "",
        client_code=str(body.get("clientcode") or ""),
        pin=str(body.get("password") or ""),
        totp=str(body.get("totp") or ""),
    )
    return ok(
        {
            "jwtToken": session.jwt_token,
            "refreshToken": session.refresh_token,
            "feedToken": session.feed_token,
        }
    )


def generate_tokens(call: Call) -> Response:
    session = call.sim.store.renew(str(call.body().get("refreshToken") or ""))
    return ok(
        {
            "jwtToken": session.jwt_token,
            "refreshToken": session.refresh_token,
            "feedToken": session.feed_token,
        }
    )


def profile(call: Call) -> Response:
    return ok(
        {
            "clientcode": call.client_code,
            "name": f"Simulated {call.client_code}",
            "email": "",
            "mobileno": "",
            "exchanges": ["NSE", "BSE", "NFO"],
            "products": ["DELIVERY", "INTRADAY", "MARGIN"],
            "lastlogintime": "",
            "brokerid": "B2C",
        }
    )


def logout(call: Call) -> Response:
    authorization = call.request.header("authorization") or ""
    call.sim.store.logout(authorization[len("Bearer ") :].strip())
    return ok("")


# --- reads ----------------------------------------------------------------------------------------


def rms(call: Call) -> Response:
    return ok(payloads.rms(paper_funds(user_id=call.client_code)))


def order_book(call: Call) -> Response:
    call.sim.pace(call.client_code, "book")
    rows = [
        payloads.order(r) for r in sim_order_list(user_id=call.client_code) if call.sim.visible(r.order_id)
    ]
    return ok(rows or None)  # Angel answers an empty book with data: null


def positions(call: Call) -> Response:
    call.sim.pace(call.client_code, "positions")
    rows = [
        payloads.position(row, unrealised=money(unrealised_pnl(row)))
        for row in paper_position_list(user_id=call.client_code)
    ]
    return ok(rows or None)


def quote(call: Call) -> Response:
    body = call.body()
    tokens = body.get("exchangeTokens") or {}
    if not isinstance(tokens, dict):
        raise AngelError("AB4000", "exchangeTokens must be an object")
    by_token = call.sim.instruments_by_token()
    fetched, unfetched = [], []
    for exchange, wanted in tokens.items():
        for token in wanted or []:
            row = by_token.get((str(exchange).upper(), str(token)))
            if row is None:
                unfetched.append({"exchange": exchange, "symbolToken": str(token), "message": "not found"})
                continue
            fetched.append(
                {
                    "exchange": row.exchange,
                    "tradingSymbol": payloads.scrip_symbol(row),
                    "symbolToken": str(row.instrument_token),
                    "ltp": float(row.last_price),
                }
            )
    return ok({"fetched": fetched, "unfetched": unfetched})


def _legs_margin(requests: list[OrderRequest]) -> MarginEstimate:
    keys = [InstrumentKey(r.exchange, r.tradingsymbol) for r in requests]
    instruments = sim_instruments_by_key(keys)
    spots = spot_prices(i.underlying for i in instruments.values() if i.is_option)
    breakdown = portfolio_margin([request_leg(r, instruments, spots) for r in requests], margin_rates())
    return MarginEstimate(total=breakdown.total, span=breakdown.span, option_premium=breakdown.option_premium)


def margin_batch(call: Call) -> Response:
    legs = call.body().get("positions")
    if not isinstance(legs, list) or not legs:
        raise AngelError("AB4000", "positions is mandatory")
    by_token = call.sim.instruments_by_token()
    requests = []
    for leg in legs:
        if not isinstance(leg, dict):
            raise AngelError("AB4000", "invalid position")
        row = by_token.get((str(leg.get("exchange") or "").upper(), str(leg.get("token") or "")))
        if row is None:
            raise AngelError("AB1009", "Symbol Not Found")
        try:
            order_type = vocab.ORDER_TYPE_FROM_ANGEL[str(leg.get("orderType") or "").upper()]
            product = vocab.PRODUCT_FROM_ANGEL[str(leg.get("productType") or "").upper()]
            side = Side(str(leg.get("tradeType") or "").upper())
            quantity = int(leg.get("qty") or 0)
        except (KeyError, ValueError):
            raise AngelError("AB4000", "invalid position") from None
        price = Decimal(str(leg.get("price") or 0))
        requests.append(
            OrderRequest(
                exchange=row.exchange,
                tradingsymbol=row.tradingsymbol,
                side=side,
                quantity=quantity,
                product=product,
                order_type=order_type,
                price=price or None,
            )
        )
    # Angel's calculator has no flag for the account's positions: the legs on their own.
    basket = _legs_margin(requests)
    alone = sum((_legs_margin([r]).total for r in requests), Decimal("0"))
    benefit = max(Decimal("0"), alone - basket.total)
    return ok(payloads.margin(basket, benefit=benefit))


# --- writes ---------------------------------------------------------------------------------------


def _tag(body: dict[str, Any]) -> str:
    tag = str(body.get("ordertag") or "")
    if len(tag) >= 20:
        raise AngelError("AB4008", "ordertag length should be less than 20 characters")
    return tag


def place_order(call: Call) -> Response:
    body = call.body()
    sim = call.sim
    variety = _field(body, "variety").upper()
    if variety not in (vocab.VARIETY_NORMAL, vocab.VARIETY_STOPLOSS):
        raise AngelError("AB1008", "Invalid Order Variety")
    row = sim.instruments_by_token().get((_field(body, "exchange").upper(), _field(body, "symboltoken")))
    if row is None or payloads.scrip_symbol(row) != _field(body, "tradingsymbol").upper():
        raise AngelError("AB1009", "Symbol Not Found")
    try:
        order_type = vocab.ORDER_TYPE_FROM_ANGEL[_field(body, "ordertype").upper()]
        product = vocab.PRODUCT_FROM_ANGEL[_field(body, "producttype").upper()]
        validity = vocab.VALIDITY_FROM_ANGEL[str(body.get("duration") or "DAY").upper()]
    except KeyError:
        raise AngelError("AB1012", "Invalid Product Type") from None
    tag = _tag(body)
    quantity = _quantity(body)
    price = _decimal(body, "price")
    trigger = _decimal(body, "triggerprice")
    sim.order_write_gate(call.client_code)
    order = paper_order_place(
        user_id=call.client_code,
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        side=_field(body, "transactiontype").upper(),
        quantity=quantity,
        product=product.value,
        order_type=order_type.value,
        price=price or None,
        trigger_price=trigger or None,
        validity=validity.value,
        tag=tag,
    )
    sim.after_accept(call.client_code, order_id=order.order_id, placed=True)
    script = payloads.scrip_symbol(row)
    return ok({"script": script, "orderid": order.order_id, "uniqueorderid": f"sim-{order.order_id}"})


def modify_order(call: Call) -> Response:
    body = call.body()
    sim = call.sim
    order_id = _field(body, "orderid")
    try:
        order_type = vocab.ORDER_TYPE_FROM_ANGEL[_field(body, "ordertype").upper()]
    except KeyError:
        raise AngelError("AB4000", "invalid ordertype") from None
    quantity = _quantity(body)
    price = _decimal(body, "price")
    trigger = _decimal(body, "triggerprice")
    sim.order_write_gate(call.client_code)
    order = paper_order_modify(
        user_id=call.client_code,
        order_id=order_id,
        quantity=quantity,
        price=price if price else None,
        trigger_price=trigger if trigger else None,
        order_type=order_type.value,
    )
    sim.after_accept(call.client_code, order_id=order.order_id, placed=False)
    return ok({"orderid": order.order_id, "uniqueorderid": f"sim-{order.order_id}"})


def cancel_order(call: Call) -> Response:
    body = call.body()
    order_id = _field(body, "orderid")
    call.sim.order_write_gate(call.client_code)
    order = paper_order_cancel(user_id=call.client_code, order_id=order_id)
    call.sim.after_accept(call.client_code, order_id=order.order_id, placed=False)
    return ok({"orderid": order.order_id, "uniqueorderid": f"sim-{order.order_id}"})


# --- the scrip master and the admin routes ----------------------------------------------------------


def scrip_master(call: Call) -> Response:
    rows = [row for row in sim_instrument_list() if row.tradingsymbol not in call.sim.unlisted]
    return Response.json_body([payloads.scrip(row) for row in rows])


def admin_health(call: Call) -> Response:
    return Response.json_body({"status": "ok"})


def admin_clients(call: Call) -> Response:
    """Register a client: `{client_code, pin?, totp_secret?, api_key?}`; answers its secrets."""
    body = call.body()
    client = call.sim.store.register(
        client_code=_field(body, "client_code"),
        pin=str(body.get("pin") or ""),
        totp_secret=str(body.get("totp_secret") or ""),
        api_key=str(body.get("api_key") or ""),
    )
    return Response.json_body(
        {
            "client_code": client.client_code,
            "pin": client.pin,
            "totp_secret": client.totp_secret,
            "api_key": client.api_key,
        }
    )


def admin_faults(call: Call) -> Response:
    body = dict(call.body())
    client_code = body.pop("client_code", None)
    return Response.json_body(call.sim.set_faults(client_code=client_code, **body))


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


def _route(method: str, path: str, handler: Handler, *, auth: bool = True, admin: bool = False) -> Route:
    return Route(method, path, re.compile(re.escape(path)), handler, auth=auth, admin=admin)


SECURE = "/rest/secure/angelbroking"
ROUTES: tuple[Route, ...] = (
    _route("POST", "/rest/auth/angelbroking/user/v1/loginByPassword", login, auth=False),
    _route("POST", "/rest/auth/angelbroking/jwt/v1/generateTokens", generate_tokens, auth=False),
    _route("GET", f"{SECURE}/user/v1/getProfile", profile),
    _route("POST", f"{SECURE}/user/v1/logout", logout),
    _route("GET", f"{SECURE}/user/v1/getRMS", rms),
    _route("GET", f"{SECURE}/order/v1/getOrderBook", order_book),
    _route("GET", f"{SECURE}/order/v1/getPosition", positions),
    _route("POST", f"{SECURE}/order/v1/placeOrder", place_order),
    _route("POST", f"{SECURE}/order/v1/modifyOrder", modify_order),
    _route("POST", f"{SECURE}/order/v1/cancelOrder", cancel_order),
    _route("POST", f"{SECURE}/market/v1/quote", quote),
    _route("POST", f"{SECURE}/margin/v1/batch", margin_batch),
    _route("GET", "/OpenAPI_File/files/OpenAPIScripMaster.json", scrip_master, auth=False, admin=True),
    _route("GET", "/_sim/health", admin_health, auth=False, admin=True),
    _route("POST", "/_sim/clients", admin_clients, auth=False, admin=True),
    _route("POST", "/_sim/faults", admin_faults, auth=False, admin=True),
    _route("DELETE", "/_sim/faults", admin_faults_clear, auth=False, admin=True),
)
WRITES = frozenset(
    {f"{SECURE}/order/v1/placeOrder", f"{SECURE}/order/v1/modifyOrder", f"{SECURE}/order/v1/cancelOrder"}
)


def resolve(method: str, path: str) -> Route | None:
    path = "/" + path.lstrip("/")
    path = path.rstrip("/") or "/"
    for route in ROUTES:
        if route.method == method and route.pattern.fullmatch(path):
            return route
    return None
