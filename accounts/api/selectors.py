"""Reads the API needs: which accounts a user may see, known instruments (who last made a change:
replication.selectors.event_last_change)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import OuterRef, Q, QuerySet, Subquery

from accounts.models import Account, CapitalMode
from brokers.paper.models import PaperInstrument
from replication.models import MarginSnapshot


@dataclass(frozen=True, slots=True)
class Funds:
    """An account's funds as the API shows them: the capital that sizes it (with its mode) and
    the margin of its latest snapshot (used, available). None where nothing was read yet."""

    capital_mode: str
    sizing_capital: Decimal | None
    used_margin: Decimal | None
    available_margin: Decimal | None
    as_of: datetime | None


def _latest(snapshots: QuerySet[MarginSnapshot]) -> QuerySet[MarginSnapshot]:
    return snapshots.order_by("-taken_at", "-id")


def _with_latest_snapshot(accounts: QuerySet[Account]) -> QuerySet[Account]:
    latest = _latest(MarginSnapshot.objects.filter(account=OuterRef("pk")))
    return accounts.annotate(
        snap_used=Subquery(latest.values("used_margin")[:1]),
        snap_available=Subquery(latest.values("available_margin")[:1]),
        snap_at=Subquery(latest.values("taken_at")[:1]),
    )


def sizing_capital(
    *, mode: str, fixed: Decimal | None, used: Decimal | None, available: Decimal | None
) -> Decimal | None:
    """DESIGN §3.1's C, as `replication.sizing.records.ChildProfile.capital` computes it (this app
    may not import sizing; a test holds the two equal): the fixed amount in FIXED mode, else U + A
    (TOTAL) or A (AVAILABLE) of the latest snapshot; None when nothing was read."""
    if mode == CapitalMode.FIXED:
        return fixed
    if used is None or available is None:
        return None
    return available if mode == CapitalMode.AVAILABLE else used + available


def account_funds(account: Account) -> Funds:
    """The funds of `account`: from the snapshot annotated by `account_list_visible`, or read now."""
    if hasattr(account, "snap_at"):
        used, available = getattr(account, "snap_used"), getattr(account, "snap_available")  # noqa: B009
        taken = getattr(account, "snap_at")  # noqa: B009  (annotations, unknown to the model's type)
    else:
        snapshot = _latest(MarginSnapshot.objects.filter(account=account)).first()
        used, available, taken = (
            (snapshot.used_margin, snapshot.available_margin, snapshot.taken_at)
            if snapshot
            else (None, None, None)
        )
    mode = CapitalMode(account.capital_mode)
    capital = sizing_capital(mode=mode, fixed=account.fixed_capital, used=used, available=available)
    return Funds(mode.value, capital, used, available, taken)


def account_list_visible(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Account]:
    """Staff see every account; anyone else only the accounts they own."""
    accounts = _with_latest_snapshot(Account.objects.select_related("owner").order_by("pk"))
    if getattr(user, "is_staff", False):
        return accounts
    return accounts.filter(owner_id=user.pk) if user.pk is not None else accounts.none()


def account_get_visible(*, user: AbstractBaseUser | AnonymousUser, pk: Any, lock: bool = False) -> Account:
    """One account the user may see; Account.DoesNotExist otherwise (others' accounts look absent)."""
    accounts = account_list_visible(user=user)
    if lock:
        accounts = accounts.select_for_update(of=("self",))
    return accounts.get(pk=pk)


def account_find(*, broker: str, user_id: str) -> Account | None:
    return Account.objects.filter(broker=broker, broker_user_id=user_id).first()


def user_get_by_username(*, username: str) -> AbstractBaseUser | None:
    model = get_user_model()
    return model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()


def paper_instruments_unknown(*, keys: Iterable[str]) -> list[str]:
    """The filter entries no paper instrument answers to, in the order given: `EXCHANGE:SYMBOL` a
    contract or an underlying there, a bare `NAME` an underlying (or a contract) on any exchange
    (the engine's rule, `replication.sizing.caps.filter_match`)."""
    wanted = list(dict.fromkeys(keys))
    names = {key.partition(":")[2] or key for key in wanted}
    known: set[str] = set()
    for exchange, symbol, underlying in PaperInstrument.objects.filter(
        Q(tradingsymbol__in=names) | Q(underlying__in=names)
    ).values_list("exchange", "tradingsymbol", "underlying"):
        for name in (symbol, underlying):
            if name:
                known.update((f"{exchange}:{name}", name))
    return [key for key in wanted if key not in known]
