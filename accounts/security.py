"""Password guessing is not free: failed sign-ins counted per account and per client address.

Every door that takes a password (the token endpoint `/api/v1/auth/token`, the product login page
`/login/`, the admin login) is one count. After `LOGIN_FAILURES_PER_ACCOUNT` failures for one
username, or `LOGIN_FAILURES_PER_ADDRESS` from one client address, within `LOGIN_LOCKOUT_SECONDS`,
that username (or address) is locked for `LOGIN_LOCKOUT_SECONDS`: every attempt is refused before
the password is even checked, so the right password is refused too. Refused attempts are neither
counted nor audited again (a lock-out cannot be extended by an attacker hammering it, and cannot
fill the audit trail).

- Counters live in Django's default cache, which every web process shares (`CACHES`: the database
  cache, or Redis when `REDIS_URL` is set). Each update is a read-modify-write under a lock that
  holds across processes (a PostgreSQL advisory lock or SQLite's write lock for the database cache,
  a Redis lock for Redis), so parallel guesses cannot lose counts.
- The client address is REMOTE_ADDR, unless `TRUSTED_PROXY_COUNT` proxies stand in front: then it
  is the X-Forwarded-For entry that the outermost trusted proxy appended (the `TRUSTED_PROXY_COUNT`-th
  from the right); anything the client wrote to the left of it is ignored. IPv6 addresses count per
  /64 (one client owns a whole /64).
- Failures are recorded from Django's `user_login_failed` signal (sent by `authenticate()`, which
  every door calls), as an audit row `login.failed` (username tried, address, path; never the
  password) and a log line; the failure that starts a lock-out also writes `login.locked`.
- Usernames are counted case- and space-insensitively (`Alice ` and `alice` are one count), and
  unknown usernames count like real ones, so a lock-out says nothing about which accounts exist.

A hand-written counter on Django's cache API rather than django-axes: axes would need its own
authentication backend and tables, and its DRF support hooks the request differently; this module
is the whole mechanism in one place, on the cache the deployment already has.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache as memoize
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.redis import RedisCache
from django.db import connections, router, transaction
from django.dispatch import receiver
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.api.exceptions import ApiError
from replication.services.audit_log import EventKind, audit

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

KEY_PREFIX = "login-failures"
ACCOUNT = "account"
ADDRESS = "address"
MAX_SHOWN_USERNAME = 150


def now() -> float:
    """Wall-clock seconds (a function, so tests can move time)."""
    return time.time()


# --- the client address -----------------------------------------------------------------------


def _normalised(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def client_address(request: HttpRequest) -> str:
    """The client's address as far as this deployment can trust it (see the module docstring)."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = int(settings.TRUSTED_PROXY_COUNT)
    if proxies > 0:
        forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        forwarded = [part for part in forwarded if part]
        if forwarded:
            chosen = _normalised(forwarded[-min(proxies, len(forwarded))])
            if chosen is not None:
                return chosen
    return _normalised(remote) or remote or "unknown"


# --- counters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    failures: int = 0
    window_ends: float = 0.0
    locked_until: float = 0.0

    def locked_at(self, moment: float) -> bool:
        return self.locked_until > moment

    @classmethod
    def read(cls, raw: Any) -> Count:
        if not isinstance(raw, dict):
            return cls()
        try:
            return cls(int(raw["failures"]), float(raw["window_ends"]), float(raw["locked_until"]))
        except (KeyError, TypeError, ValueError):
            return cls()


@dataclass(frozen=True)
class Lockout:
    """Why an attempt is refused and for how long."""

    scope: str  # ACCOUNT or ADDRESS
    retry_after: int  # whole seconds, at least 1

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        what = "for this account" if self.scope == ACCOUNT else "from your address"
        return f"Too many failed sign-ins {what}. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


def _username_key(username: str) -> str:
    digest = hashlib.sha256(username.strip().casefold().encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_PREFIX}:{ACCOUNT}:{digest[:40]}"


def _address_key(address: str) -> str:
    return f"{KEY_PREFIX}:{ADDRESS}:{hashlib.sha256(address.encode()).hexdigest()[:40]}"


_local_lock = threading.Lock()


@memoize
def _redis_client(url: str) -> Any:
    import redis  # only when Redis is the cache

    return redis.Redis.from_url(url)


def shared_cache() -> BaseCache:
    """The cache backend itself (settings.CACHES["default"]), not Django's `cache` proxy, so that
    its type tells how to lock."""
    return caches[DEFAULT_CACHE_ALIAS]


def _lock_id(key: str) -> int:
    """A signed 64-bit number naming `key`, for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


@contextmanager
def _exclusive(key: str) -> Iterator[None]:
    """Hold `key` against every other process sharing the cache while it is read and written."""
    cache = shared_cache()
    if isinstance(cache, DatabaseCache):
        alias = router.db_for_write(cache.cache_model_class)
        connection: BaseDatabaseWrapper = connections[alias]
        # SQLite here starts every transaction IMMEDIATE (settings), which takes the database's
        # write lock: one writer at a time. PostgreSQL: an advisory lock for this key.
        with transaction.atomic(using=alias):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_id(key)])
            yield
        return
    if isinstance(cache, RedisCache):
        location = settings.CACHES[DEFAULT_CACHE_ALIAS]["LOCATION"]
        url = str(location[0] if isinstance(location, (list, tuple)) else location)
        with _redis_client(url).lock(f"pms:{key}:lock", timeout=10, blocking_timeout=10):
            yield
        return
    with _local_lock:  # a per-process cache: only this process's threads to keep apart
        yield


def _count_failure(key: str, *, limit: int, moment: float) -> tuple[Count, bool]:
    """Add one failure under `key`; (the new count, whether this failure started a lock-out)."""
    seconds = float(settings.LOGIN_LOCKOUT_SECONDS)
    cache = shared_cache()
    with _exclusive(key):
        old = Count.read(cache.get(key))
        if old.locked_at(moment):
            return old, False
        if old.window_ends > moment:
            failures, window_ends = old.failures + 1, old.window_ends
        else:
            failures, window_ends = 1, moment + seconds
        starts_lockout = failures >= limit
        new = Count(failures, window_ends, 0.0)
        if starts_lockout:  # locked from now; counting starts afresh when the lock-out ends
            new = Count(0, moment + seconds, moment + seconds)
        timeout = math.ceil(max(new.window_ends, new.locked_until) - moment) + 1
        cache.set(
            key,
            {"failures": new.failures, "window_ends": new.window_ends, "locked_until": new.locked_until},
            timeout,
        )
    return Count(failures, window_ends, new.locked_until), starts_lockout


def _keys(request: HttpRequest | None, username: str) -> list[tuple[str, str]]:
    keys = [(ACCOUNT, _username_key(username))]
    if request is not None:
        keys.append((ADDRESS, _address_key(client_address(request))))
    return keys


def login_lockout(request: HttpRequest | None, username: str) -> Lockout | None:
    """The lock-out that refuses a sign-in as `username` from this request's address, if any."""
    moment = now()
    values = shared_cache().get_many([key for _, key in _keys(request, username)])
    locks = [
        Lockout(scope=scope, retry_after=max(1, math.ceil(count.locked_until - moment)))
        for scope, key in _keys(request, username)
        if (count := Count.read(values.get(key))).locked_at(moment)
    ]
    return max(locks, key=lambda lock: lock.retry_after, default=None)


def login_unlock(*, username: str | None = None, address: str | None = None, actor: str) -> None:
    """Staff: end a lock-out (and forget the failures) for a username and/or a client address
    (an IPv6 address unlocks its /64). Audited as `login.unlocked`."""
    keys = []
    if username is not None:
        keys.append(_username_key(username))
    normalised = _normalised(address) if address is not None else None
    if address is not None:
        keys.append(_address_key(normalised or address))
    if not keys:
        raise ValueError("name a username, an address or both")
    shared_cache().delete_many(keys)
    data = {"username": _shown(username) if username is not None else None, "address": normalised or address}
    audit(kind=EventKind.LOGIN_UNLOCKED, message=f"sign-in lock-out lifted: {data}", actor=actor, data=data)
    logger.info("sign-in lock-out lifted by %s: %s", actor, data)


def _shown(username: str) -> str:
    """The username as an audit row may show it: bounded, with control and format characters escaped."""
    text = username[:MAX_SHOWN_USERNAME]
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def login_failed(request: HttpRequest | None, username: str) -> Lockout | None:
    """Count, log and audit one failed sign-in; the lock-out it started, if any."""
    moment = now()
    address = client_address(request) if request is not None else ""
    path = request.path[:200] if request is not None else ""
    limits = {
        ACCOUNT: int(settings.LOGIN_FAILURES_PER_ACCOUNT),
        ADDRESS: int(settings.LOGIN_FAILURES_PER_ADDRESS),
    }
    counts: dict[str, int] = {}
    started: list[Lockout] = []
    for scope, key in _keys(request, username):
        count, starts = _count_failure(key, limit=limits[scope], moment=moment)
        counts[scope] = count.failures
        if starts:
            started.append(Lockout(scope=scope, retry_after=int(settings.LOGIN_LOCKOUT_SECONDS)))
    shown = _shown(username)
    where = f" from {address}" if address else ""
    tally = ", ".join(f"{counts[scope]} of {limits[scope]} for the {scope}" for scope in counts)
    actor = f"anonymous@{address}" if address else "anonymous"
    data = {"username": shown, "address": address, "path": path, "failures": counts}
    audit(
        kind=EventKind.LOGIN_FAILED,
        message=f"failed sign-in as {shown!r}{where} at {path} ({tally})",
        actor=actor,
        data=data,
    )
    logger.warning("failed sign-in as %r%s at %s (%s)", shown, where, path, tally)
    for lock in started:
        target = f"account {shown!r}" if lock.scope == ACCOUNT else f"address {address}"
        audit(
            kind=EventKind.LOGIN_LOCKED,
            message=f"{target} locked for {lock.retry_after} s after {limits[lock.scope]} failed sign-ins",
            actor=actor,
            data={**data, "scope": lock.scope, "seconds": lock.retry_after},
        )
        logger.warning(
            "%s locked for %s s after %s failed sign-ins", target, lock.retry_after, limits[lock.scope]
        )
    return max(started, key=lambda lock: lock.retry_after, default=None)


@receiver(user_login_failed, dispatch_uid="accounts.security.count_failed_login")
def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """`authenticate()` found no user for these credentials: count it (every door calls it)."""
    username = credentials.get(get_user_model().USERNAME_FIELD, credentials.get("username"))
    if not isinstance(username, str):
        return
    login_failed(request, username)


# --- the doors --------------------------------------------------------------------------------


class LoginLocked(ApiError, exceptions.Throttled):
    """429 `login_locked` in the usual `{code, message, fields}` shape, with Retry-After (the API's
    exception handler sets it for every Throttled)."""

    def __init__(self, lockout: Lockout) -> None:
        super().__init__("login_locked", lockout.message, status_code=429)
        self.wait: float | None = lockout.retry_after
        self.lockout = lockout


class LoginLockoutThrottle(BaseThrottle):
    """DRF throttle for views that take a username and password: refuses a locked account or address."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        data = request.data if isinstance(request.data, dict) else {}
        username = data.get("username")
        if isinstance(username, str):
            lockout = login_lockout(request._request, username)
            if lockout is not None:
                raise LoginLocked(lockout)
        return True


class ThrottledLoginMixin:
    """For Django's authentication forms: refuse a locked account or address before the password is
    checked, and say so when the failure that was just counted started a lock-out."""

    request: HttpRequest | None
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if isinstance(username, str) and username:
            lockout = login_lockout(self.request, username)
            if lockout is not None:
                raise forms.ValidationError(lockout.message, code="login_locked")
            try:
                return super().clean()  # type: ignore[misc, no-any-return]
            except forms.ValidationError as error:
                lockout = login_lockout(self.request, username)
                if lockout is not None:
                    raise forms.ValidationError(lockout.message, code="login_locked") from error
                raise
        return super().clean()  # type: ignore[misc, no-any-return]


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """The product login page's form."""


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin login's form (staff only, as Django's)."""
