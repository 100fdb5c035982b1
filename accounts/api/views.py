"""Accounts API (/api/v1/): token, link, list, detail, settings, consent, promote, unlink.

Views are thin: they check types (serializers), apply the client rules of `accounts.api.permissions`
and call the audited account services with `actor=<username>`. Each HTTP method is one operation
with its own input and output serializer. Errors are `{code, message, fields}` (one handler).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from accounts.api.base import ApiPagination, ApiView, actor, errors, validated
from accounts.api.exceptions import ApiError, error_body
from accounts.api.permissions import (
    IsStaff,
    client_link_refusals,
    client_settings_refusals,
    client_status_refusal,
    is_staff,
)
from accounts.api.selectors import (
    account_get_visible,
    account_list_visible,
    paper_instruments_unknown,
    user_get_by_username,
)
from accounts.api.serializers import (
    AccountLinkInput,
    AccountLinkOutput,
    AccountOutput,
    AccountSettingsInput,
    ConsentInput,
    TokenObtainInput,
    TokenOutput,
    UnlinkQuery,
    login_required,
)
from accounts.api.tokens.services import token_issue
from accounts.models import Account, Broker
from accounts.security import LoginLockoutThrottle
from accounts.services import (
    AccountError,
    account_give_consent,
    account_link,
    account_link_validate,
    account_promote_master,
    account_set_credentials,
    account_set_status,
    account_settings_validate,
    account_unlink,
    account_update_settings,
    consent_version_current,
)
from accounts.services.linking import account_link_target
from accounts.validation import Errors, clean_reason, clean_status
from brokers.capabilities import capabilities_for

TAG = "accounts"
CREDENTIALS = ("api_key", "api_secret", "access_token", "pin", "totp_secret")
# Service field names -> this API's names, where they differ.
SETTINGS_FIELD_NAMES = {"name": "display_name"}


def _forbidden(code: str, fields: dict[str, str]) -> ApiError:
    return ApiError(code, "; ".join(fields.values()), fields, status_code=status.HTTP_403_FORBIDDEN)


def _visible(request: Request, pk: int, *, lock: bool = False) -> Account:
    try:
        return account_get_visible(user=request.user, pk=pk, lock=lock)
    except Account.DoesNotExist:
        raise ApiError("not_found", "No such account.", status_code=status.HTTP_404_NOT_FOUND) from None


def _owner(username: str | None, field: str = "owner") -> Any:
    if username is None:
        return None
    user = user_get_by_username(username=username)
    if user is None:
        raise ApiError("invalid_owner", f"no user named {username[:40]!r}", {field: "no such user"})
    return user


def interactive_login_url(account: Account) -> str:
    """Where the owner of an account with an interactive login starts it (the broker's login view,
    `<broker>:login`, when wired: Kite's)."""
    try:
        return reverse(f"{account.broker}:login", args=[account.pk])
    except NoReverseMatch:
        return f"/accounts/{account.pk}/{account.broker}/login/"


def _renamed(exc: AccountError, names: dict[str, str]) -> AccountError:
    if not any(name in exc.fields for name in names):
        return exc
    fields = {names.get(name, name): text for name, text in exc.fields.items()}
    return AccountError(exc.code, exc.message, fields)


@csrf_exempt  # answers every method with a 404 and changes nothing
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any unknown path under /api/v1/ (including ids that are not numbers): a JSON 404."""
    return JsonResponse(error_body("not_found", "No such API endpoint or object."), status=404)


class TokenObtainView(ApiView):
    """Exchange a username and password for a new API token (`Authorization: Token <token>`).

    Each call issues a new token, valid until `expiry` (API_TOKEN_TTL_HOURS), a password change
    or its revocation. The token is shown only in this answer: only a hash of it is stored.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    # Locked-out usernames and addresses first (429 `login_locked`; accounts.security), then the
    # per-address rate.
    throttle_classes = [LoginLockoutThrottle, ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(
        tags=["auth"],
        operation_id="auth_token_obtain",
        request=TokenObtainInput,
        responses={200: TokenOutput, **errors(400, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = validated(TokenObtainInput, request.data)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            raise ApiError("invalid_login", "The username or password is wrong.")
        token, secret = token_issue(user=user)
        return Response(TokenOutput({"token": secret, "id": token.digest, "expiry": token.expiry}).data)


class AccountLinkView(ApiView):
    """Link a broker account (or update the one already linked under the same broker and user id).

    A client links for itself (it becomes the owner) and may not make a master, pick fixed capital
    mode or a multiplier above 1 (above the current one on re-link), nor re-link an account that
    someone else owns (409). A client's new account is a claim (`ownership: pending`): never
    traded until its first successful broker login proves the user id. A pending claim never
    blocks another client's link of the same id (the real owner gets 201 and a claim of its own);
    once one is proven or vouched for, the other claims are dropped and new ones get 409
    `already_linked`. A paper account behind a linked broker account (same user id) is refused
    (409). Staff may link for any user (`owner`) or for none, and link the first master; staff
    links are vouched for. An account whose broker's login is interactive (Kite) without a live
    access token, or still pending, comes back with `login_url`.

    Angel One (`broker: "angel"`, `user_id` the client code): a new account needs `api_key` and
    either `pin` and `totp_secret` (write-only, stored encrypted: the server logs in every day) or
    an `access_token`. With the api key, PIN and TOTP secret the link logs in once at Angel One
    before storing anything: a refusal is 400 `login_refused` (`login_failed`: Angel could not be
    reached), a success keeps the day's session and proves a client's claim (`proven`).

    Dhan (`broker: "dhan"`, `user_id` the client id): `pin` and `totp_secret` (no `api_key`
    needed; the link logs in once as for Angel One and the server makes each day's 24-hour token),
    or an `access_token` made on web.dhan.co (lives 24 hours; a new one each day).

    Alice Blue (`broker: "alice"`): `api_key` the App Code, `api_secret`, and `access_token` the
    vendor login's `userSession` (long-lived; stored as given, no login at link time). An expired
    session (EC087) moves the account to `needs_login` until a new one is stored.
    """

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "link"

    @extend_schema(
        tags=[TAG],
        operation_id="accounts_link",
        request=AccountLinkInput,
        responses={200: AccountLinkOutput, 201: AccountLinkOutput, **errors(400, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        data = validated(AccountLinkInput, request.data)
        staff = is_staff(request.user)
        owner_name = data.pop("owner", None)
        if not staff:
            refusals: dict[str, str] = {}
            if data.get("master"):
                refusals["master"] = "only staff may link a master account"
            if owner_name is not None and owner_name != request.user.get_username():
                refusals["owner"] = "clients link accounts for themselves only"
            if refusals:
                raise _forbidden("permission_denied", refusals)
            owner: Any = request.user
        else:
            owner = _owner(owner_name)
        # A client's link is a claim, pending until its first broker login proves the user id.
        arguments = {**data, "owner": owner, "actor": actor(request), "claim": not staff}
        account_link_validate(**arguments)  # 409 already_linked: the id is someone else's
        existing = account_link_target(
            broker=data["broker"], user_id=data["user_id"], owner=owner, claim=not staff
        )
        if not staff:
            refusals = client_link_refusals(existing=existing, cleaned=data)
            if refusals:
                raise _forbidden("loosening_refused", refusals)
        account, created = account_link(**arguments)
        body = {
            "account": account,
            "created": created,
            "login_url": interactive_login_url(account)
            if login_required(account)
            or (account.is_pending and capabilities_for(account.broker).session.interactive)
            else None,
        }
        return Response(
            AccountLinkOutput(body).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class AccountListView(ListAPIView[Account]):
    """Accounts you may see: all of them for staff, your own for a client."""

    serializer_class = AccountOutput
    pagination_class = ApiPagination
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> Any:
        return account_list_visible(user=self.request.user)

    @extend_schema(
        tags=[TAG], operation_id="accounts_list", responses={200: AccountOutput(many=True), **errors()}
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class AccountDetailView(ApiView):
    """One account: read it (GET), change its settings and status (PATCH), unlink it (DELETE).

    Clients may only make their own account stricter — see `accounts.api.permissions` for the
    exact rules (limits only tighten, multiplier only down, no fixed mode, resume only a pause of
    their own); the pending-order policy is theirs to set. Staff may change anything. A PATCH is
    all or nothing.
    """

    @extend_schema(
        tags=[TAG], operation_id="accounts_retrieve", responses={200: AccountOutput, **errors(404)}
    )
    def get(self, request: Request, pk: int) -> Response:
        """One account. Credentials are never shown, only whether each is stored."""
        return Response(AccountOutput(_visible(request, pk)).data)

    @extend_schema(
        tags=[TAG],
        operation_id="accounts_update",
        request=AccountSettingsInput,
        responses={200: AccountOutput, **errors(400, 403, 404, 409)},
    )
    def patch(self, request: Request, pk: int) -> Response:
        """Change settings, credentials (write-only) and status (pause, halt, resume) in one go.

        All or nothing: any refused key leaves the account untouched. Every change is audited with
        the caller's username and before -> after (credentials only as "***").

        Staff may change anything. A client (owner) may only make its account stricter:

        - number limits (`max_lots_per_order`, `max_quantity`, `max_order_value`,
          `max_open_positions`, `daily_loss_limit`) may be set where there is none or lowered,
          never raised or removed;
        - `allowed_instruments` / `allowed_products` may be created or narrowed to a non-empty
          subset; `blocked_instruments` may only grow;
        - `multiplier` only down; `capital_mode` only from `total` to `available`; `fixed` mode,
          raising `fixed_capital`, `proxy_url` and `owner` are staff-only;
        - `status`: `paused` and `halted` any time; back to `active` only from a pause or halt the
          client set itself; `dry_run` off only if the client switched it on; `disabled` and
          `needs_login` are staff-only; `disabled` is refused (409 `positions_held`) while the engine
          holds positions or pending orders there, unless staff send `force: true` with a `reason`;
        - `pending_policy` (`leave` or `market_after_seconds`) and `market_after_seconds` (whole
          seconds) are the client's own preference: what happens to a child order still open after
          the master's order filled. A client may set them either way.

        Refusals under these rules are 403 `loosening_refused`, naming each field.
        """
        _visible(request, pk)  # 404 before any input is judged
        data = validated(AccountSettingsInput, request.data)
        new_status, reason = data.pop("status", None), data.pop("reason", None)
        force = bool(data.pop("force", False))
        credentials = {name: data.pop(name) for name in CREDENTIALS if name in data}
        check = Errors()
        check.run("status", clean_status, new_status)
        check.run("reason", clean_reason, reason)
        if reason is not None and new_status is None:
            check.add("reason_without_status", "reason", "a reason goes with a status change")
        if force and new_status is None:
            check.add("force_without_status", "force", "force goes with a status change")
        check.raise_if_any()
        if "owner" in data:
            data["owner"] = _owner(data["owner"])
        staff = is_staff(request.user)
        if force and not staff:
            raise _forbidden("permission_denied", {"force": "only staff may force a status change"})
        who = actor(request)
        with transaction.atomic():
            account = _visible(request, pk, lock=True)
            try:
                cleaned = account_settings_validate(account=account, **data)
            except AccountError as exc:
                raise _renamed(exc, SETTINGS_FIELD_NAMES) from None
            self._check_instruments(account, cleaned)
            if not staff:
                refusals = client_settings_refusals(account=account, cleaned=cleaned, username=who)
                if new_status is not None:
                    refusal = client_status_refusal(account=account, status=new_status, username=who)
                    if refusal:
                        refusals["status"] = refusal
                if refusals:
                    raise _forbidden("loosening_refused", refusals)
            if data:
                account_update_settings(account=account, actor=who, **data)
            if credentials:
                account_set_credentials(account=account, actor=who, **credentials)
            if new_status is not None:
                account_set_status(
                    account=account, status=new_status, actor=who, reason=reason or "", force=force
                )
        return Response(AccountOutput(_visible(request, pk)).data)

    @staticmethod
    def _check_instruments(account: Account, cleaned: dict[str, Any]) -> None:
        """Paper accounts: every newly listed instrument must exist on the paper exchange."""
        if account.broker != Broker.PAPER:
            return
        check = Errors()
        for name in ("allowed_instruments", "blocked_instruments"):
            added = [key for key in cleaned.get(name) or [] if key not in (getattr(account, name) or [])]
            unknown = paper_instruments_unknown(keys=added)
            if unknown:
                shown = ", ".join(key[:40] for key in unknown[:5])
                check.add("unknown_instrument", name, f"{name}: unknown instrument(s) {shown}")
        check.raise_if_any()

    @extend_schema(
        tags=[TAG],
        operation_id="accounts_unlink",
        parameters=[UnlinkQuery],
        responses={200: AccountOutput, **errors(400, 403, 404, 409)},
    )
    def delete(self, request: Request, pk: int) -> Response:
        """Unlink: the account is disabled and its credentials forgotten; its rows stay for the audit
        trail. Refused (409) while the engine holds positions there, unless staff pass `force=true`
        and a `reason`."""
        account = _visible(request, pk)
        query = validated(UnlinkQuery, request.query_params)
        if query["force"] and not is_staff(request.user):
            raise _forbidden("permission_denied", {"force": "only staff may force an unlink"})
        account = account_unlink(
            account=account, actor=actor(request), force=query["force"], reason=query["reason"]
        )
        return Response(AccountOutput(account).data)


class AccountConsentView(ApiView):
    """Record consent to replication under the current (or the given) terms version."""

    @extend_schema(
        tags=[TAG],
        operation_id="accounts_consent",
        request=ConsentInput,
        responses={200: AccountOutput, **errors(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _visible(request, pk)
        data = validated(ConsentInput, request.data)
        account = account_give_consent(
            account=account, version=data.get("version", consent_version_current()), actor=actor(request)
        )
        return Response(AccountOutput(account).data)


class AccountPromoteMasterView(ApiView):
    """Staff only: make this account the master; the old master becomes a child atomically."""

    permission_classes = [IsStaff]

    @extend_schema(
        tags=[TAG],
        operation_id="accounts_promote_master",
        request=None,
        responses={200: AccountOutput, **errors(400, 403, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        account = _visible(request, pk)
        return Response(AccountOutput(account_promote_master(account=account, actor=actor(request))).data)
