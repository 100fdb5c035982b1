"""Reads of linked accounts."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Account, AccountStatus, Role


def account_get(*, pk: int) -> Account:
    """One account by primary key; raises Account.DoesNotExist."""
    return Account.objects.get(pk=pk)


def account_get_master() -> Account | None:
    """The enabled master, or None before one is linked (the database allows at most one)."""
    return Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()


def account_list_children(*, eligible_only: bool) -> QuerySet[Account]:
    """Child accounts in id order. Eligible: not disabled and consent given (paused/halted included:
    the engine still syncs and exits them)."""
    children = Account.objects.filter(role=Role.CHILD)
    if eligible_only:
        children = children.exclude(status=AccountStatus.DISABLED).filter(consent_given_at__isnull=False)
    return children.order_by("pk")
