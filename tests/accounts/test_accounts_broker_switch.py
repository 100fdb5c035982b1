"""`account_switch_broker`: an account moves between paper and kite under the same user id, audited,
its old broker's credentials forgotten, refused while the engine holds positions there."""

from __future__ import annotations

import pytest

from accounts.models import Account, AccountStatus, Broker
from accounts.services import AccountError, account_switch_broker
from replication.models import ReplicationEvent
from tests.factories import AccountFactory, KiteAccountFactory
from tests.kite_factories import OrderMappingFactory

pytestmark = pytest.mark.django_db


def test_account_switch_broker_to_kite_needs_a_login_and_is_audited():
    account = AccountFactory(broker=Broker.PAPER, broker_user_id="DEMO1")

    switched = account_switch_broker(account=account, broker=Broker.KITE, actor="ops")

    assert (switched.broker, switched.status) == (Broker.KITE, AccountStatus.NEEDS_LOGIN)
    assert Account.objects.get(pk=account.pk).broker == Broker.KITE
    event = ReplicationEvent.objects.get(kind="account.broker_switched")
    assert (event.actor, event.account_id) == ("ops", account.pk)
    assert event.data["broker"] == {"before": "paper", "after": "kite"}
    assert event.data["status"] == {"before": "active", "after": "needs_login"}
    assert event.data["forced"] is False


def _paper_book(user_id: str) -> None:
    from decimal import Decimal

    from brokers.paper.models import PaperAccount

    PaperAccount.objects.get_or_create(user_id=user_id, defaults={"cash": Decimal("500000")})


def test_account_switch_broker_to_paper_needs_a_paper_book():
    """Issue 11 defect 15 (on the switch path): a switch to a paper book that does not exist is
    refused, never an account shown as active and skipped for `no_capital` every tick."""
    account = KiteAccountFactory(broker_user_id="ZK0043")
    with pytest.raises(AccountError) as refused:
        account_switch_broker(account=account, broker=Broker.PAPER, actor="ops")
    assert refused.value.code == "paper_account_unknown"
    assert Account.objects.get(pk=account.pk).broker == Broker.KITE


def test_account_switch_broker_to_paper_forgets_credentials_without_showing_them():
    account = KiteAccountFactory(broker_user_id="ZK0042", status=AccountStatus.NEEDS_LOGIN)
    _paper_book("ZK0042")
    secrets = (account.api_key, account.api_secret, account.access_token)

    switched = account_switch_broker(account=account, broker=Broker.PAPER, actor="ops")

    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.broker, fresh.status) == (Broker.PAPER, AccountStatus.ACTIVE)
    assert (fresh.api_key, fresh.api_secret, fresh.access_token) == ("", "", "")
    assert (fresh.token_obtained_at, fresh.token_expires_at) == (None, None)
    assert switched.broker == Broker.PAPER
    event = ReplicationEvent.objects.get(kind="account.broker_switched")
    assert event.data["access_token"] == {"before": "***", "after": ""}
    assert not any(secret in str(event.data) + event.message for secret in secrets)


def test_account_switch_broker_keeps_a_paused_status():
    account = KiteAccountFactory(status=AccountStatus.PAUSED)
    _paper_book(account.broker_user_id)

    account_switch_broker(account=account, broker=Broker.PAPER, actor="ops")

    assert Account.objects.get(pk=account.pk).status == AccountStatus.PAUSED


def test_account_switch_broker_to_the_same_broker_writes_nothing():
    account = KiteAccountFactory()

    account_switch_broker(account=account, broker=Broker.KITE, actor="ops")

    assert Account.objects.get(pk=account.pk).secret("access_token") == account.access_token
    assert not ReplicationEvent.objects.exists()


@pytest.mark.parametrize(
    ("setup", "broker", "code"),
    [
        (lambda: AccountFactory(broker_user_id="lower1"), Broker.KITE, "invalid_user_id"),
        (lambda: AccountFactory(broker_user_id="BOTH1"), Broker.KITE, "account_exists"),
        (lambda: AccountFactory(broker_user_id="X1"), "zerodha", "unknown_broker"),
    ],
)
def test_account_switch_broker_refuses_bad_targets(setup, broker, code):
    account = setup()
    KiteAccountFactory(broker_user_id="BOTH1")

    with pytest.raises(AccountError) as refused:
        account_switch_broker(account=account, broker=broker, actor="ops")

    assert refused.value.code == code
    assert Account.objects.get(pk=account.pk).broker == Broker.PAPER
    assert not ReplicationEvent.objects.filter(kind="account.broker_switched").exists()


def test_account_switch_broker_refused_while_engine_holds_positions_unless_forced():
    account = AccountFactory(broker_user_id="HOLD1")
    OrderMappingFactory(child=account)  # an open engine order in SBIN

    with pytest.raises(AccountError) as held:
        account_switch_broker(account=account, broker=Broker.KITE, actor="ops")
    with pytest.raises(AccountError) as no_reason:
        account_switch_broker(account=account, broker=Broker.KITE, actor="ops", force=True)
    assert (held.value.code, no_reason.value.code) == ("positions_held", "reason_required")
    assert "NSE:SBIN CNC" in held.value.message
    assert Account.objects.get(pk=account.pk).broker == Broker.PAPER

    account_switch_broker(account=account, broker=Broker.KITE, actor="ops", force=True, reason="same book")

    assert Account.objects.get(pk=account.pk).broker == Broker.KITE
    event = ReplicationEvent.objects.get(kind="account.broker_switched")
    assert (event.data["forced"], event.data["reason"]) == (True, "same book")
