"""Issue 13 item 2: the engine's state on accounts (needs-login, failures, breaker) is written by
services only: atomic, lease-checked where the engine calls them, each change with its audit row
(an `EventKind`) in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Account, AccountStatus
from replication.lease import Lease, LeaseLost, lease_acquire
from replication.models import EventKind, ReplicationEvent
from replication.services import accounts_mark_needs_login, accounts_record_send_results
from replication.services import audit_log as audit_log_module

pytestmark = pytest.mark.django_db


@pytest.fixture
def lease() -> Lease:
    taken = lease_acquire(holder="services-test")
    assert taken is not None
    return taken


@pytest.fixture
def lost_lease(lease: Lease) -> Lease:
    """A lease another process has since taken over (expired, then acquired: the epoch moved on)."""
    later = timezone.now() + lease.ttl + timedelta(seconds=1)
    assert lease_acquire(holder="someone-else", now=later) is not None
    return lease


def _children(desk) -> list[Account]:  # type: ignore[no-untyped-def]
    return [desk.children[name] for name in ("C1", "C2")]


def test_mark_needs_login_moves_accounts_with_one_row_each(desk, lease):
    """Issue 13 item 2: needs-login is written with its audit row under the one kind
    `account.login_needed`; accounts already there are left alone."""
    c1, c2 = _children(desk)
    moved = accounts_mark_needs_login(lease=lease, account_ids=[c1.pk, c2.pk], reason="session expired")
    assert sorted(moved) == sorted([c1.pk, c2.pk])
    assert set(Account.objects.filter(pk__in=moved).values_list("status", flat=True)) == {
        AccountStatus.NEEDS_LOGIN
    }
    rows = ReplicationEvent.objects.filter(account__in=[c1, c2])
    assert sorted(rows.values_list("account_id", "kind")) == sorted(
        [(c1.pk, EventKind.ACCOUNT_LOGIN_NEEDED), (c2.pk, EventKind.ACCOUNT_LOGIN_NEEDED)]
    )
    assert accounts_mark_needs_login(lease=lease, account_ids=[c1.pk], reason="again") == []
    assert ReplicationEvent.objects.count() == 2


def test_mark_needs_login_refused_without_the_lease(desk, lost_lease):
    """Issue 13 item 2: a process that lost the lease changes no account and writes no row."""
    c1, _ = _children(desk)
    with pytest.raises(LeaseLost):
        accounts_mark_needs_login(lease=lost_lease, account_ids=[c1.pk], reason="session expired")
    c1.refresh_from_db()
    assert c1.status == AccountStatus.ACTIVE
    assert not ReplicationEvent.objects.exists()


def test_send_results_trip_the_breaker_with_its_row(desk, lease):
    """Issue 13 item 2: consecutive failures count up, a good result resets them, the threshold
    trips the breaker once with a `breaker_tripped` row."""
    c1, c2 = _children(desk)
    assert accounts_record_send_results(lease=lease, ok=[], failed=[c1.pk, c2.pk], breaker_threshold=2) == []
    assert accounts_record_send_results(lease=lease, ok=[c2.pk], failed=[c1.pk], breaker_threshold=2) == [
        c1.pk
    ]
    assert accounts_record_send_results(lease=lease, ok=[], failed=[c1.pk], breaker_threshold=2) == []
    c1.refresh_from_db()
    c2.refresh_from_db()
    assert c1.consecutive_failures == 3 and c1.breaker_tripped_at is not None
    assert c2.consecutive_failures == 0 and c2.breaker_tripped_at is None
    assert list(ReplicationEvent.objects.values_list("account_id", "kind")) == [
        (c1.pk, EventKind.BREAKER_TRIPPED)
    ]


def test_send_results_refused_without_the_lease(desk, lost_lease):
    """Issue 13 item 2: failures are not counted, nor breakers tripped, by a process without the lease."""
    c1, _ = _children(desk)
    with pytest.raises(LeaseLost):
        accounts_record_send_results(lease=lost_lease, ok=[], failed=[c1.pk], breaker_threshold=1)
    c1.refresh_from_db()
    assert c1.consecutive_failures == 0 and c1.breaker_tripped_at is None
    assert not ReplicationEvent.objects.exists()


def test_account_change_rolls_back_when_its_audit_row_cannot_be_written(desk, lease, monkeypatch):
    """Issue 13 item 2: the state change and its audit row are one transaction: when the row fails,
    the account is unchanged."""
    c1, _ = _children(desk)

    def refuse(*args: object, **kwargs: object) -> int:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(audit_log_module, "insert_rows", refuse)
    with pytest.raises(RuntimeError):
        accounts_mark_needs_login(lease=lease, account_ids=[c1.pk], reason="session expired")
    with pytest.raises(RuntimeError):
        accounts_record_send_results(lease=lease, ok=[], failed=[c1.pk], breaker_threshold=1)
    c1.refresh_from_db()
    assert c1.status == AccountStatus.ACTIVE
    assert c1.consecutive_failures == 0 and c1.breaker_tripped_at is None
