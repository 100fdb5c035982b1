"""Reads the API needs: which accounts a user may see, known instruments (who last made a change:
replication.selectors.event_last_change)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from accounts.models import Account
from brokers.paper.models import PaperInstrument


def account_list_visible(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Account]:
    """Staff see every account; anyone else only the accounts they own."""
    accounts = Account.objects.select_related("owner").order_by("pk")
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
    """The "EXCHANGE:SYMBOL" keys that no paper instrument has, in the order given."""
    wanted = [key for key in dict.fromkeys(keys) if ":" in key]
    symbols = {key.split(":", 1)[1] for key in wanted}
    known = {
        f"{exchange}:{symbol}"
        for exchange, symbol in PaperInstrument.objects.filter(tradingsymbol__in=symbols).values_list(
            "exchange", "tradingsymbol"
        )
    }
    return [key for key in dict.fromkeys(keys) if key not in known]
