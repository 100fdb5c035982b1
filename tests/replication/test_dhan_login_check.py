"""Issue 16: the 08:45 pre-open check logs in itself for a Dhan account whose PIN and TOTP secret
are stored (the Dhan simulator, through the real dhanhq SDK's `generateAccessToken`), stores the
new 24-hour token, and flags the account only when that login fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import Account, Broker
from replication.login_check import accounts_needing_login, login_check_task
from replication.models import ReplicationEvent
from tests.dhan_helpers import running_dhan_sim
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dhan_sim() -> Iterator[object]:
    with running_dhan_sim() as running:
        yield running


def _dhan(dhan_sim, client_id: str) -> Account:
    client = dhan_sim.sim.store.register(client_id=client_id)
    return AccountFactory(
        broker=Broker.DHAN,
        broker_user_id=client_id,
        api_key=client.api_key,
        pin=client.pin,
        totp_secret=client.totp_secret,
        access_token="",
        token_expires_at=None,
    )


def test_the_check_logs_in_for_a_dhan_account_and_stores_a_24_hour_token(dhan_sim):
    account = _dhan(dhan_sim, "1100000010")
    now = timezone.now()

    assert accounts_needing_login(now) == []
    summary = login_check_task(now)

    assert "logged in" in summary
    account.refresh_from_db()
    assert account.secret("access_token").startswith("dhansim")
    assert abs(account.token_expires_at - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=2)
    assert dhan_sim.sim.hit_count(route="POST /app/generateAccessToken", status=200) == 1


def test_a_refused_dhan_login_flags_only_that_account(dhan_sim):
    refused = _dhan(dhan_sim, "1100000011")
    fine = _dhan(dhan_sim, "1100000012")
    dhan_sim.sim.set_faults(client_id="1100000011", login_refused=True)

    login_check_task(timezone.now())

    flagged = set(
        ReplicationEvent.objects.filter(kind="account.login_needed").values_list("account_id", flat=True)
    )
    assert refused.pk in flagged and fine.pk not in flagged
    fine.refresh_from_db()
    assert fine.secret("access_token")
