"""The simulator's routes: Kite v3 (kite/API.md §4) over the paper exchange, and the route table
(with the `/_sim/...` admin routes of lab.kite_sim.admin_routes).

Each handler takes a `Call` (the simulator, the request, the caller's session, the path
arguments) and returns a `Response`, or raises `KiteError` / a `brokers.errors.BrokerError`
(the simulator turns those into Kite error bodies).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from brokers.errors import InputRejected
from brokers.paper.margin import money, portfolio_margin
from brokers.paper.selectors import (
    margin_rates,
    paper_basket_margin,
    paper_funds_detail,
    paper_order_margins,
    paper_position_list,
    request_leg,
    spot_prices,
    unrealised_pnl,
)
from brokers.paper.services import paper_order_cancel, paper_order_modify, paper_order_place
from brokers.types import InstrumentKey, MarginEstimate, OrderRequest, OrderType, Product, Side
from lab.kite_sim import payloads
from lab.kite_sim.admin_routes import (
    admin_apps,
    admin_faults_clear,
    admin_faults_get,
    admin_faults_set,
    admin_health,
    admin_login,
    admin_sessions,
    connect_login,
)
from lab.kite_sim.selectors import (
    sim_instrument_list,
    sim_instruments_by_key,
    sim_order_get,
    sim_order_list,
    sim_trade_list,
)
from lab.kite_sim.wire import Call, KiteError, Request, Response, input_error

PROTECTED_TYPES = frozenset({"MARKET", "SL-M"})
SEGMENTS = ("equity", "commodity")
TRUE_WORDS = frozenset({"true", "1", "yes"})


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as written in the table, e.g. /orders/{variety}
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True  # needs `Authorization: token api_key:access_token`
    admin: bool = False  # a /_sim/ route: no faults, no latency


# --- parameters -----------------------------------------------------------------------------------


def _optional_int(request: Request, name: str) -> int | None:
    value = request.param(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise input_error(f"Invalid `{name}`.") from None


def _optional_decimal(request: Request, name: str) -> Decimal | None:
    value = request.param(name)
    if value is None or value.strip() == "":
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise input_error(f"Invalid `{name}`.") from None
    if not number.is_finite():
        raise input_error(f"Invalid `{name}`.")
    return number


def _market_protection(request: Request, order_type: str | None) -> int | float:
    """`market_protection`: -1 (automatic) or a percentage in (0, 100]; required, and not 0, for
    MARKET and SL-M orders sent through the API (API.md §3, from 2026-04-01)."""
    value = _optional_decimal(request, "market_protection")
    if order_type in PROTECTED_TYPES and not value:
        raise input_error(
            "Market orders without market protection are not allowed via API. "
            "Please set `market_protection` or use a Limit order."
        )
    if value is None or value == 0:
        return 0
    if value != -1 and not 0 < value <= 100:
        raise input_error("Invalid `market_protection`.")
    return int(value) if value == value.to_integral_value() else float(value)


# --- session and user -----------------------------------------------------------------------------


def session_create(call: Call) -> Response:
    request = call.request
    session = call.sim.store.exchange(
        api_key=request.param("api_key") or "",
        request_token=request.param("request_token") or "",
        checksum_hex=request.param("checksum") or "",
    )
    return Response.ok(payloads.session(session))


def session_delete(call: Call) -> Response:
    request = call.request
    call.sim.store.invalidate(
        api_key=request.required("api_key"), access_token=request.required("access_token")
    )
    return Response.ok(True)


def user_profile(call: Call) -> Response:
    return Response.ok(payloads.profile(call.user_id))


def user_margins(call: Call) -> Response:
    margins = payloads.margins(paper_funds_detail(user_id=call.user_id))
    segment = call.args.get("segment")
    if segment is None:
        return Response.ok(margins)
    if segment not in SEGMENTS:
        raise input_error("Invalid segment.")
    return Response.ok(margins[segment])


# --- orders and trades ----------------------------------------------------------------------------


def orders_list(call: Call) -> Response:
    sim, user_id = call.sim, call.user_id
    return Response.ok(
        [
            payloads.order(row, user_id=user_id, market_protection=sim.protection(row.order_id))
            for row in sim_order_list(user_id=user_id)
            if sim.visible(row.order_id)
        ]
    )


def _visible_order_id(call: Call) -> str:
    order_id = call.args["order_id"]
    if not call.sim.visible(order_id):
        raise input_error("Couldn't find that `order_id`.")
    return order_id


def order_history(call: Call) -> Response:
    order_id = _visible_order_id(call)
    row = sim_order_get(user_id=call.user_id, order_id=order_id)
    history = payloads.order_history(
        row, user_id=call.user_id, market_protection=call.sim.protection(order_id)
    )
    return Response.ok(history)


def order_trades(call: Call) -> Response:
    order_id = _visible_order_id(call)
    sim_order_get(user_id=call.user_id, order_id=order_id)  # unknown ids are an error
    rows = sim_trade_list(user_id=call.user_id, order_id=order_id)
    return Response.ok(
        [payloads.trade(t, instrument_token=t.order.instrument.instrument_token) for t in rows]
    )


def trades_list(call: Call) -> Response:
    rows = sim_trade_list(user_id=call.user_id)
    return Response.ok(
        [
            payloads.trade(t, instrument_token=t.order.instrument.instrument_token)
            for t in rows
            if call.sim.visible(t.order.order_id)
        ]
    )


def order_place(call: Call) -> Response:
    request, sim = call.request, call.sim
    session = call.caller
    if (request.param("autoslice") or "").lower() in TRUE_WORDS:
        raise input_error("The simulator does not autoslice; slice the order yourself.")
    order_type = request.required("order_type").upper()
    protection = _market_protection(request, order_type)
    quantity = _optional_int(request, "quantity")
    if quantity is None:
        raise input_error("Missing `quantity`.")
    fields = {
        "exchange": request.required("exchange"),
        "tradingsymbol": request.required("tradingsymbol"),
        "side": request.required("transaction_type"),
        "product": request.required("product"),
    }
    price = _optional_decimal(request, "price")
    trigger = _optional_decimal(request, "trigger_price")
    sim.order_write_gate(session)
    row = paper_order_place(
        user_id=session.user_id,
        quantity=quantity,
        order_type=order_type,
        price=price,
        trigger_price=trigger,
        validity=(request.param("validity") or "DAY").upper(),
        variety=call.args["variety"],
        tag=request.param("tag") or "",
        **fields,
    )
    sim.remember_protection(row.order_id, protection)
    sim.order_updated(session, row, placed=True)
    sim.after_accept(session, order_id=row.order_id, placed=True)
    return Response.ok({"order_id": row.order_id})


def order_modify(call: Call) -> Response:
    request, sim = call.request, call.sim
    session = call.caller
    order_type = (request.param("order_type") or "").upper() or None
    protection = _market_protection(request, order_type) if order_type else None
    quantity = _optional_int(request, "quantity")
    price = _optional_decimal(request, "price")
    trigger = _optional_decimal(request, "trigger_price")
    sim.order_write_gate(session)
    row = paper_order_modify(
        user_id=session.user_id,
        order_id=call.args["order_id"],
        quantity=quantity,
        price=price,
        trigger_price=trigger,
        order_type=order_type,
    )
    if protection is not None:
        sim.remember_protection(row.order_id, protection)
    sim.order_updated(session, row, placed=False)
    sim.after_accept(session, order_id=row.order_id, placed=False)
    return Response.ok({"order_id": row.order_id})


def order_cancel(call: Call) -> Response:
    session = call.caller
    call.sim.order_write_gate(session)
    row = paper_order_cancel(user_id=session.user_id, order_id=call.args["order_id"])
    call.sim.order_updated(session, row, placed=False)
    call.sim.after_accept(session, order_id=row.order_id, placed=False)
    return Response.ok({"order_id": row.order_id})


# --- portfolio ------------------------------------------------------------------------------------


def positions(call: Call) -> Response:
    rows = [
        payloads.position(row, unrealised=money(unrealised_pnl(row)))
        for row in paper_position_list(user_id=call.user_id)
    ]
    return Response.ok({"net": rows, "day": [dict(row) for row in rows]})


def holdings(call: Call) -> Response:
    """The paper exchange holds no demat stock: always an empty list (for an authenticated caller)."""
    return Response.ok([])


# --- margin calculators ---------------------------------------------------------------------------


def _order_requests(request: Request) -> list[OrderRequest]:
    """The JSON array of `/margins/orders` and `/margins/basket` as order requests."""
    body = request.json()
    if not isinstance(body, list) or not body:
        raise input_error("The request body must be a non-empty JSON array of orders.")
    orders = []
    for item in body:
        if not isinstance(item, dict):
            raise input_error("Each order must be a JSON object.")
        try:
            order_type = OrderType(str(item.get("order_type", "")).upper())
            price = Decimal(str(item.get("price") or 0))
            trigger = Decimal(str(item.get("trigger_price") or 0))
            quantity = item.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
                raise ValueError("quantity")
            orders.append(
                OrderRequest(
                    exchange=str(item["exchange"]).upper(),
                    tradingsymbol=str(item["tradingsymbol"]).upper(),
                    side=Side(str(item.get("transaction_type", "")).upper()),
                    quantity=int(quantity),
                    product=Product(str(item.get("product", "")).upper()),
                    order_type=order_type,
                    price=price or None,
                    trigger_price=trigger or None,
                    variety=str(item.get("variety") or "regular"),
                )
            )
        except (KeyError, ValueError, InvalidOperation) as exc:
            raise input_error(f"Invalid order in the request body: {exc}") from None
    return orders


def margins_orders(call: Call) -> Response:
    requests = _order_requests(call.request)
    estimates = paper_order_margins(user_id=call.user_id, requests=requests)
    return Response.ok(
        [
            payloads.margin(e, exchange=r.exchange, tradingsymbol=r.tradingsymbol, kind="equity")
            for r, e in zip(requests, estimates, strict=True)
        ]
    )


def _basket_alone(requests: list[OrderRequest]) -> MarginEstimate:
    """Margin of the basket on its own (no positions or open orders): hedges inside it count."""
    keys = [InstrumentKey(r.exchange, r.tradingsymbol) for r in requests]
    instruments = sim_instruments_by_key(keys)
    for key in keys:
        if key not in instruments:
            raise InputRejected(f"unknown instrument {key}")
    spots = spot_prices(i.underlying for i in instruments.values() if i.is_option)
    breakdown = portfolio_margin([request_leg(r, instruments, spots) for r in requests], margin_rates())
    return MarginEstimate(total=breakdown.total, span=breakdown.span, option_premium=breakdown.option_premium)


def margins_basket(call: Call) -> Response:
    requests = _order_requests(call.request)
    consider = (call.request.param("consider_positions") or "").lower() in TRUE_WORDS
    if consider:
        final = paper_basket_margin(user_id=call.user_id, requests=requests)
    else:
        final = _basket_alone(requests)
    alone = paper_order_margins(user_id=call.user_id, requests=requests)
    return Response.ok(
        payloads.basket(
            final=final,
            orders=[(r.exchange, r.tradingsymbol, e) for r, e in zip(requests, alone, strict=True)],
        )
    )


# --- instruments and quotes -----------------------------------------------------------------------


def instruments(call: Call) -> Response:
    return Response.csv(payloads.instruments_csv(sim_instrument_list(exchange=call.args.get("exchange"))))


def _quoted(call: Call, render: Callable[[Any], dict[str, Any]]) -> Response:
    names = call.request.query.get("i", [])
    if not names:
        raise input_error("Missing `i` (instruments as EXCHANGE:TRADINGSYMBOL).")
    wanted: dict[str, InstrumentKey] = {}
    for name in names:
        exchange, sep, symbol = name.partition(":")
        if sep and exchange and symbol:
            wanted[name] = InstrumentKey(exchange.upper(), symbol.upper())
    found = sim_instruments_by_key(list(wanted.values()))
    return Response.ok({name: render(found[key]) for name, key in wanted.items() if key in found})


def quote(call: Call) -> Response:
    now = call.sim.store.now()
    return _quoted(call, lambda row: payloads.quote(row, now=now))


def quote_ltp(call: Call) -> Response:
    return _quoted(call, payloads.ltp)


def quote_ohlc(call: Call) -> Response:
    return _quoted(call, payloads.ohlc)


# --- the table ------------------------------------------------------------------------------------


def _route(method: str, path: str, handler: Handler, *, auth: bool = True, admin: bool = False) -> Route:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, path, re.compile(pattern), handler, auth=auth, admin=admin)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/session/token", session_create, auth=False),
    _route("DELETE", "/session/token", session_delete, auth=False),
    _route("GET", "/user/profile", user_profile),
    _route("GET", "/user/margins", user_margins),
    _route("GET", "/user/margins/{segment}", user_margins),
    _route("GET", "/orders", orders_list),
    _route("GET", "/orders/{order_id}", order_history),
    _route("GET", "/orders/{order_id}/trades", order_trades),
    _route("GET", "/trades", trades_list),
    _route("POST", "/orders/{variety}", order_place),
    _route("PUT", "/orders/{variety}/{order_id}", order_modify),
    _route("DELETE", "/orders/{variety}/{order_id}", order_cancel),
    _route("GET", "/portfolio/positions", positions),
    _route("GET", "/portfolio/holdings", holdings),
    _route("POST", "/margins/orders", margins_orders),
    _route("POST", "/margins/basket", margins_basket),
    _route("GET", "/instruments", instruments),
    _route("GET", "/instruments/{exchange}", instruments),
    _route("GET", "/quote", quote),
    _route("GET", "/quote/ltp", quote_ltp),
    _route("GET", "/quote/ohlc", quote_ohlc),
    _route("GET", "/connect/login", connect_login, auth=False, admin=True),
    _route("GET", "/_sim/health", admin_health, auth=False, admin=True),
    _route("POST", "/_sim/sessions", admin_sessions, auth=False, admin=True),
    _route("POST", "/_sim/apps", admin_apps, auth=False, admin=True),
    _route("GET", "/_sim/login", admin_login, auth=False, admin=True),
    _route("GET", "/_sim/faults", admin_faults_get, auth=False, admin=True),
    _route("POST", "/_sim/faults", admin_faults_set, auth=False, admin=True),
    _route("DELETE", "/_sim/faults", admin_faults_clear, auth=False, admin=True),
)


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for a request, or KiteError 404 (no such path) / 405 (path known, method not)."""
    path = path.rstrip("/") or "/"
    path_known = False
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        path_known = True
    if path_known:
        raise KiteError(405, "GeneralException", "Method not allowed.")
    raise KiteError(404, "GeneralException", "Route not found.")
