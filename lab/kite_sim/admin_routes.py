"""The simulator's own routes: `/_sim/...` administration for tests and operators, and a stand-in for
Kite's login page (`/connect/login`). No auth (the server listens on loopback only), no faults."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lab.kite_sim.wire import Call, Request, Response, input_error


def _json_object(request: Request) -> dict[str, Any]:
    body = request.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise input_error("The request body must be a JSON object.")
    return body


def admin_health(call: Call) -> Response:
    return Response.ok({"ok": True})


def admin_sessions(call: Call) -> Response:
    """Register a session: `{"user_id", "api_key"?, "access_token"?, "expires_at"? (ISO, aware)}`."""
    body = _json_object(call.request)
    expires_at = None
    if body.get("expires_at"):
        try:
            expires_at = datetime.fromisoformat(str(body["expires_at"]))
        except ValueError:
            raise input_error("Invalid `expires_at`.") from None
        if expires_at.tzinfo is None:
            raise input_error("`expires_at` needs a time zone.")
    session = call.sim.store.create(
        user_id=str(body.get("user_id") or ""),
        api_key=str(body.get("api_key") or ""),
        access_token=str(body.get("access_token") or ""),
        expires_at=expires_at,
    )
    return Response.ok(
        {
            "user_id": session.user_id,
            "api_key": session.api_key,
            "access_token": session.access_token,
            "expires_at": session.expires_at.isoformat(),
        }
    )


def admin_apps(call: Call) -> Response:
    """Register an app: `{"api_key", "api_secret", "redirect_url"?, "user_id"?}`."""
    body = _json_object(call.request)
    app = call.sim.store.register_app(
        api_key=str(body.get("api_key") or ""),
        api_secret=str(body.get("api_secret") or ""),
        redirect_url=str(body.get("redirect_url") or ""),
        user_id=str(body.get("user_id") or ""),
    )
    return Response.ok({"api_key": app.api_key, "redirect_url": app.redirect_url, "user_id": app.user_id})


def admin_login(call: Call) -> Response:
    """`GET /_sim/login?api_key=...&user_id=...[&api_secret=...]`: a request token, as JSON (an
    `api_secret` registers the app on the way)."""
    request, store = call.request, call.sim.store
    api_key = request.required("api_key")
    secret = request.param("api_secret")
    if secret:
        existing = store.app(api_key)
        store.register_app(
            api_key=api_key,
            api_secret=secret,
            redirect_url=existing.redirect_url if existing else "",
            user_id=existing.user_id if existing else "",
        )
    token = store.issue_request_token(api_key=api_key, user_id=request.required("user_id"))
    return Response.ok({"request_token": token, "action": "login", "status": "success"})


def connect_login(call: Call) -> Response:
    """Kite's login page (`/connect/login?v=3&api_key=...`): with a user id (query, or the app's
    default) it sends the browser to the app's redirect URL with a request token; without one it
    shows a one-field form asking for it."""
    request, store = call.request, call.sim.store
    api_key = request.required("api_key")
    app = store.app(api_key)
    if app is None or not app.redirect_url:
        raise input_error("Unknown `api_key`, or the app has no redirect URL registered.")
    user_id = (request.param("user_id") or app.user_id).strip()
    if not user_id:
        return Response.html(
            "<!doctype html><title>Kite simulator login</title>"
            '<form method="get" action="/connect/login">'
            f'<input type="hidden" name="api_key" value="{html.escape(api_key)}">'
            '<input type="hidden" name="v" value="3">'
            f'<input type="hidden" name="redirect_params" value="'
            f'{html.escape(request.param("redirect_params") or "")}">'
            '<label>Paper user id <input name="user_id" autofocus></label> <button>Log in</button></form>'
        )
    token = store.issue_request_token(api_key=api_key, user_id=user_id)
    parts = urlsplit(app.redirect_url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    params += parse_qsl(request.param("redirect_params") or "", keep_blank_values=True)
    params += [("request_token", token), ("action", "login"), ("type", "login"), ("status", "success")]
    return Response.redirect(urlunsplit(parts._replace(query=urlencode(params))))


def admin_faults_set(call: Call) -> Response:
    """Set faults (see lab.kite_sim.faults): `{"user_id"?: "C1", ...spec}`."""
    body = _json_object(call.request)
    user_id = body.pop("user_id", None)
    state = call.sim.set_faults(user_id=str(user_id) if user_id else None, **body)
    return Response.ok(state)


def admin_faults_get(call: Call) -> Response:
    return Response.ok(call.sim.faults.state())


def admin_faults_clear(call: Call) -> Response:
    user_id = call.request.param("user_id")
    call.sim.faults.clear(user_id=user_id or None)
    return Response.ok(call.sim.faults.state())
