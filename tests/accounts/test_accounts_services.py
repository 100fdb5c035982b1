"""Account services: linking without duplicates, one master, hostile input refused, audit without secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts import selectors
from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, CapitalMode, Role
from accounts.services import (
    AccountError,
    account_broker_client,
    account_give_consent,
    account_link,
    account_promote_master,
    account_refresh_margins,
    account_set_credentials,
    account_set_status,
    account_update_settings,
    kite_token_expiry,
)
from brokers.paper.models import PaperAccount
from replication.models import MarginSnapshot, ReplicationEvent
from tests.accounts_helpers import install_fake_broker
from tests.factories import AccountFactory, KiteAccountFactory, MasterAccountFactory, UserFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("C1", "CH1", "F1", "M1", "NEW1", "P1", "X1")


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


API_KEY = "kiteapikey123"
API_SECRET = "kiteapisecretvalue987"
ACCESS_TOKEN = "accesstokenplain42"


def _counts() -> tuple[int, int]:
    return Account.objects.count(), ReplicationEvent.objects.count()


def _all_audit_text() -> str:
    return " ".join(json.dumps(e.data) + " " + e.message for e in ReplicationEvent.objects.all())


# --- linking ---------------------------------------------------------------------------------------


def test_account_link_creates_then_updates_the_same_row():
    account, created = account_link(broker="paper", user_id="CH1", name="Client one", actor="cli")
    again, created_again = account_link(
        broker="paper", user_id="CH1", name="Client renamed", multiplier=Decimal("2.5"), actor="cli"
    )

    assert created is True
    assert created_again is False
    assert again.pk == account.pk
    assert Account.objects.filter(broker="paper", broker_user_id="CH1").count() == 1
    fresh = Account.objects.get(pk=account.pk)
    assert fresh.display_name == "Client renamed"
    assert fresh.multiplier == Decimal("2.5")
    assert fresh.role == Role.CHILD
    kinds = list(ReplicationEvent.objects.filter(account=account).order_by("id").values_list("kind", "actor"))
    assert kinds == [("account.linked", "cli"), ("account.updated", "cli")]
    update = ReplicationEvent.objects.get(kind="account.updated")
    assert update.data["display_name"] == {"before": "Client one", "after": "Client renamed"}
    assert update.data["multiplier"] == {"before": "1.0000", "after": "2.5000"}


def test_account_link_unchanged_relink_writes_no_audit_row():
    account_link(broker="paper", user_id="CH1", name="Same", actor="cli")
    before = _counts()

    account_link(broker="paper", user_id="CH1", name="Same", actor="cli")

    assert _counts() == before


def test_account_link_kite_user_id_is_case_insensitive():
    first, _ = account_link(
        broker="kite", user_id="ab1234", api_key=API_KEY, api_secret=API_SECRET, actor="cli"
    )
    second, created = account_link(broker="kite", user_id="AB1234", actor="cli")

    assert first.broker_user_id == "AB1234"
    assert second.pk == first.pk
    assert created is False
    assert Account.objects.count() == 1


def test_account_link_master_on_fresh_install_becomes_master():
    account, _ = account_link(broker="paper", user_id="M1", master=True, actor="cli")

    assert account.role == Role.MASTER
    assert selectors.account_get_master() == account


def test_account_link_second_master_refused_and_nothing_changes():
    master = MasterAccountFactory()
    child = AccountFactory(display_name="untouched")
    before = _counts()

    with pytest.raises(AccountError) as excinfo:
        account_link(broker="paper", user_id="NEW1", master=True, actor="cli")
    with pytest.raises(AccountError) as excinfo_existing:
        account_link(broker="paper", user_id=child.broker_user_id, name="changed", master=True, actor="cli")

    assert excinfo.value.code == "master_exists"
    assert "promote" in excinfo.value.message
    assert excinfo_existing.value.code == "master_exists"
    assert _counts() == before
    child.refresh_from_db()
    assert child.display_name == "untouched"
    assert child.role == Role.CHILD
    assert selectors.account_get_master() == master


def test_account_link_relinking_the_master_as_master_is_fine():
    master = MasterAccountFactory()

    account, created = account_link(broker="paper", user_id=master.broker_user_id, master=True, actor="cli")

    assert (account.pk, created, account.role) == (master.pk, False, Role.MASTER)


def test_account_link_consent_uses_configured_version():
    account, _ = account_link(broker="paper", user_id="C1", consent=True, actor="cli")
    assert account.consent_version == "2026-01"
    assert account.consent_given_at is not None
    assert account.consent_given_at.tzinfo is not None

    with override_settings(CONSENT_VERSION="2027-02"):
        account, _ = account_link(broker="paper", user_id="C1", consent=True, actor="cli")
    assert account.consent_version == "2027-02"


def test_account_link_paper_needs_no_credentials_and_kite_keeps_them_encrypted():
    paper, _ = account_link(broker="paper", user_id="P1", actor="cli")
    kite, _ = account_link(
        broker="kite",
        user_id="ZK1",
        api_key=API_KEY,
        api_secret=API_SECRET,
        access_token=ACCESS_TOKEN,
        actor="cli",
    )

    assert paper.api_key == ""
    fresh = Account.objects.get(pk=kite.pk)
    assert fresh.secret("api_secret") == API_SECRET
    assert fresh.token_expires_at == kite_token_expiry(fresh.token_obtained_at)


def test_account_link_markup_and_sql_in_name_stored_verbatim():
    name = "<script>alert('x')</script>'; DROP TABLE accounts_account;--"

    account, _ = account_link(broker="paper", user_id="X1", name=name, actor="cli")

    assert Account.objects.get(pk=account.pk).display_name == name


def test_account_link_fixed_mode_with_capital():
    account, _ = account_link(
        broker="paper", user_id="F1", capital_mode="fixed", fixed_capital="250000.50", actor="cli"
    )

    assert account.capital_mode == CapitalMode.FIXED
    assert account.fixed_capital == Decimal("250000.50")


HOSTILE_LINKS = [
    ({"broker": "zerodha"}, "unknown_broker"),
    ({"broker": 7}, "unknown_broker"),
    ({"broker": None}, "unknown_broker"),
    ({"user_id": ""}, "invalid_user_id"),
    ({"user_id": "   "}, "invalid_user_id"),
    ({"user_id": "x" * 65}, "invalid_user_id"),
    ({"user_id": "AB 12"}, "invalid_user_id"),
    ({"user_id": "AB1'; DROP TABLE accounts_account;--"}, "invalid_user_id"),
    ({"user_id": "<b>id</b>"}, "invalid_user_id"),
    ({"user_id": 12345}, "invalid_user_id"),
    ({"user_id": None}, "invalid_user_id"),
    ({"name": "n" * 121}, "invalid_name"),
    ({"name": "bad\x00name"}, "invalid_name"),
    ({"name": ["list"]}, "invalid_name"),
    ({"broker": "kite"}, "credentials_required"),
    ({"broker": "kite", "api_key": API_KEY}, "credentials_required"),
    ({"broker": "kite", "api_key": "abc", "api_secret": API_SECRET}, "invalid_credentials"),
    ({"broker": "kite", "api_key": "has space 1", "api_secret": API_SECRET}, "invalid_credentials"),
    ({"broker": "kite", "api_key": "k" * 65, "api_secret": API_SECRET}, "invalid_credentials"),
    ({"broker": "kite", "api_key": API_KEY, "api_secret": "se-cret!x"}, "invalid_credentials"),
    ({"broker": "kite", "api_key": API_KEY, "api_secret": 123456789}, "invalid_credentials"),
    (
        {"broker": "kite", "api_key": API_KEY, "api_secret": API_SECRET, "access_token": "tok en"},
        "invalid_credentials",
    ),
    ({"api_key": API_KEY}, "credentials_not_allowed"),
    ({"multiplier": "0"}, "invalid_number"),
    ({"multiplier": "-1"}, "invalid_number"),
    ({"multiplier": "100.0001"}, "invalid_number"),
    ({"multiplier": "1e9"}, "invalid_number"),
    ({"multiplier": "abc"}, "invalid_number"),
    ({"multiplier": "NaN"}, "invalid_number"),
    ({"multiplier": "Infinity"}, "invalid_number"),
    ({"multiplier": "1.00001"}, "invalid_number"),
    ({"multiplier": "9" * 100}, "invalid_number"),
    ({"multiplier": 1.5}, "invalid_number"),
    ({"multiplier": True}, "invalid_number"),
    ({"multiplier": [1]}, "invalid_number"),
    ({"capital_mode": "fixed", "fixed_capital": "-5"}, "invalid_number"),
    ({"capital_mode": "fixed", "fixed_capital": "0"}, "invalid_number"),
    ({"capital_mode": "fixed", "fixed_capital": "10000000000000.01"}, "invalid_number"),
    ({"capital_mode": "fixed", "fixed_capital": "1e20"}, "invalid_number"),
    ({"capital_mode": "fixed", "fixed_capital": "12.345"}, "invalid_number"),
    ({"fixed_capital": "100000"}, "fixed_capital_without_fixed_mode"),
    ({"capital_mode": "available", "fixed_capital": "100000"}, "fixed_capital_without_fixed_mode"),
    ({"capital_mode": "fixed"}, "fixed_mode_without_capital"),
    ({"capital_mode": "everything"}, "invalid_capital_mode"),
    ({"capital_mode": 3}, "invalid_capital_mode"),
    ({"master": "yes"}, "invalid_flag"),
    ({"consent": 1}, "invalid_flag"),
    ({"owner": "bob"}, "invalid_owner"),
    ({"actor": ""}, "invalid_actor"),
]


@pytest.mark.parametrize(("overrides", "code"), HOSTILE_LINKS)
def test_account_link_hostile_input_refused_without_writing(overrides, code):
    MasterAccountFactory()
    AccountFactory(broker_user_id="EXISTING")
    kwargs = {"broker": "paper", "user_id": "NEW1", "actor": "cli", **overrides}
    before = _counts()

    with pytest.raises(AccountError) as excinfo:
        account_link(**kwargs)

    assert excinfo.value.code == code
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.fields
    assert _counts() == before


def test_account_link_reports_every_bad_field_at_once():
    with pytest.raises(AccountError) as excinfo:
        account_link(broker="paper", user_id="", multiplier="-1", name="x" * 200, actor="cli")

    assert set(excinfo.value.fields) == {"user_id", "multiplier", "name"}


def test_account_link_error_never_echoes_a_credential():
    bad_secret = "not a valid secret but private"
    with pytest.raises(AccountError) as excinfo:
        account_link(broker="kite", user_id="ZK9", api_key=API_KEY, api_secret=bad_secret, actor="cli")

    assert bad_secret not in excinfo.value.message
    assert bad_secret not in json.dumps(excinfo.value.fields)


def test_account_link_update_of_existing_checks_fixed_capital_against_stored_mode():
    account = AccountFactory(capital_mode=CapitalMode.TOTAL)
    before = _counts()

    with pytest.raises(AccountError) as excinfo:
        account_link(broker="paper", user_id=account.broker_user_id, fixed_capital="5000", actor="cli")

    assert excinfo.value.code == "fixed_capital_without_fixed_mode"
    assert _counts() == before


# --- master --------------------------------------------------------------------------------------


def test_account_promote_master_swaps_roles_and_audits():
    old = MasterAccountFactory()
    new = AccountFactory()

    account_promote_master(account=new, actor="alice")

    old.refresh_from_db()
    assert new.role == Role.MASTER
    assert old.role == Role.CHILD
    assert Account.objects.filter(role=Role.MASTER).count() == 1
    promoted = ReplicationEvent.objects.get(kind="account.master_promoted")
    demoted = ReplicationEvent.objects.get(kind="account.master_demoted")
    assert (promoted.account_id, promoted.actor) == (new.pk, "alice")
    assert promoted.data["role"] == {"before": "child", "after": "master"}
    assert promoted.data["previous_master_ids"] == [old.pk]
    assert (demoted.account_id, demoted.data["role"]) == (old.pk, {"before": "master", "after": "child"})


def test_account_promote_master_is_atomic_when_a_write_fails():
    old = MasterAccountFactory()
    new = AccountFactory()
    before = _counts()

    with (
        mock.patch(
            "accounts.services.lifecycle.audit", side_effect=[mock.DEFAULT, RuntimeError("disk full")]
        ),
        pytest.raises(RuntimeError),
    ):
        account_promote_master(account=new, actor="alice")

    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.role, new.role) == (Role.MASTER, Role.CHILD)
    assert _counts() == before


def test_account_promote_master_refuses_a_disabled_account():
    MasterAccountFactory()
    disabled = AccountFactory(status=AccountStatus.DISABLED)

    with pytest.raises(AccountError) as excinfo:
        account_promote_master(account=disabled, actor="alice")

    assert excinfo.value.code == "account_disabled"
    assert Account.objects.get(pk=disabled.pk).role == Role.CHILD


def test_account_promote_master_of_the_master_changes_nothing():
    master = MasterAccountFactory()
    before = _counts()

    account_promote_master(account=master, actor="alice")

    assert _counts() == before


# --- settings --------------------------------------------------------------------------------------


def test_account_update_settings_stores_cleaned_values_and_audits_diff():
    account = AccountFactory()

    account_update_settings(
        account=account,
        actor="bob",
        allowed_instruments=["nfo:nifty25decfut", "NFO:NIFTY25DECFUT", "NSE:M&M"],
        allowed_products=["nrml", "MIS"],
        max_quantity=1800,
        max_order_value="500000",
        dry_run=True,
        capital_mode="fixed",
        fixed_capital=Decimal("300000"),
    )

    account.refresh_from_db()
    assert account.allowed_instruments == ["NFO:NIFTY25DECFUT", "NSE:M&M"]
    assert account.allowed_products == ["NRML", "MIS"]
    assert (account.max_quantity, account.max_order_value, account.dry_run) == (1800, Decimal("500000"), True)
    event = ReplicationEvent.objects.get(kind="account.settings_updated")
    assert event.actor == "bob"
    assert event.data["max_quantity"] == {"before": None, "after": 1800}
    assert event.data["capital_mode"] == {"before": "total", "after": "fixed"}


def test_account_update_settings_leaving_fixed_mode_clears_fixed_capital():
    account = AccountFactory(capital_mode=CapitalMode.FIXED, fixed_capital=Decimal("100000"))

    account_update_settings(account=account, actor="bob", capital_mode="available")

    assert (account.capital_mode, account.fixed_capital) == (CapitalMode.AVAILABLE, None)


def test_account_update_settings_none_clears_a_limit():
    account = AccountFactory(max_quantity=50, blocked_instruments=["NSE:SBIN"])

    account_update_settings(account=account, actor="bob", max_quantity=None, blocked_instruments=None)

    assert (account.max_quantity, account.blocked_instruments) == (None, [])


HOSTILE_SETTINGS = [
    ({"allowed_instruments": "NFO:NIFTY"}, "invalid_instruments"),
    ({"allowed_instruments": ["NIFTY 50"]}, "invalid_instruments"),
    ({"allowed_instruments": ["NFO:"]}, "invalid_instruments"),
    ({"blocked_instruments": [42]}, "invalid_instruments"),
    ({"blocked_instruments": ["NSE:<script>"]}, "invalid_instruments"),
    ({"allowed_instruments": ["NSE:SBIN"] * 5001}, "invalid_instruments"),
    ({"allowed_products": ["XYZ"]}, "invalid_products"),
    ({"allowed_products": "NRML"}, "invalid_products"),
    ({"max_quantity": 0}, "invalid_number"),
    ({"max_quantity": -1}, "invalid_number"),
    ({"max_quantity": True}, "invalid_number"),
    ({"max_quantity": 2**40}, "invalid_number"),
    ({"max_lots_per_order": "1.5"}, "invalid_number"),
    ({"max_open_positions": 2.0}, "invalid_number"),
    ({"max_order_value": "-1"}, "invalid_number"),
    ({"daily_loss_limit": "1e14"}, "invalid_number"),
    ({"multiplier": None}, "invalid_number"),
    ({"multiplier": "101"}, "invalid_number"),
    ({"dry_run": "yes"}, "invalid_flag"),
    ({"capital_mode": "fixed"}, "fixed_mode_without_capital"),
    ({"fixed_capital": "1000"}, "fixed_capital_without_fixed_mode"),
    ({"proxy_url": "ftp://proxy:21"}, "invalid_proxy_url"),
    ({"display_name": "x" * 500}, "invalid_name"),
    ({"role": "master"}, "unknown_field"),
    ({"status": "active"}, "unknown_field"),
    ({"api_key": API_KEY}, "unknown_field"),
]


@pytest.mark.parametrize(("fields", "code"), HOSTILE_SETTINGS)
def test_account_update_settings_hostile_input_refused_without_writing(fields, code):
    account = AccountFactory()
    before_row = Account.objects.filter(pk=account.pk).values().get()
    before = _counts()

    with pytest.raises(AccountError) as excinfo:
        account_update_settings(account=account, actor="bob", **fields)

    assert excinfo.value.code == code
    assert _counts() == before
    assert Account.objects.filter(pk=account.pk).values().get() == before_row


def test_account_update_settings_audit_redacts_proxy_password():
    account = AccountFactory()

    account_update_settings(account=account, actor="bob", proxy_url="http://user:hunter2@proxy.example:3128")

    account_update_settings(account=account, actor="bob", proxy_url="http://user:hunter3@proxy.example:3128")

    assert account.proxy_url == "http://user:hunter3@proxy.example:3128"
    last = ReplicationEvent.objects.filter(kind="account.settings_updated").order_by("-id").first()
    assert last.data == {"proxy_password": {"before": "***", "after": "***"}}
    assert "hunter2" not in _all_audit_text()
    assert "hunter3" not in _all_audit_text()


# --- status and consent -----------------------------------------------------------------------------


def test_account_set_status_pause_and_resume_audited_with_reason():
    account = AccountFactory(consecutive_failures=4, breaker_tripped_at=timezone.now())

    account_set_status(account=account, status=AccountStatus.PAUSED, actor="bob", reason="client asked")
    account_set_status(account=account, status=AccountStatus.ACTIVE, actor="bob")

    assert account.status == AccountStatus.ACTIVE
    assert (account.consecutive_failures, account.breaker_tripped_at) == (0, None)
    events = list(ReplicationEvent.objects.filter(kind="account.status_changed").order_by("id"))
    assert [e.data["status"] for e in events] == [
        {"before": "active", "after": "paused"},
        {"before": "paused", "after": "active"},
    ]
    assert events[0].data["reason"] == "client asked"
    assert "client asked" in events[0].message


def test_account_set_status_same_status_writes_nothing():
    account = AccountFactory()
    before = _counts()

    account_set_status(account=account, status=AccountStatus.ACTIVE, actor="bob")

    assert _counts() == before


@pytest.mark.parametrize("status", ["running", "", None, 3])
def test_account_set_status_unknown_status_refused(status):
    account = AccountFactory()

    with pytest.raises(AccountError) as excinfo:
        account_set_status(account=account, status=status, actor="bob")

    assert excinfo.value.code == "invalid_status"


def test_account_set_status_kite_resume_needs_a_live_token():
    account = KiteAccountFactory(
        status=AccountStatus.NEEDS_LOGIN, token_expires_at=timezone.now() - timedelta(hours=1)
    )

    with pytest.raises(AccountError) as excinfo:
        account_set_status(account=account, status=AccountStatus.ACTIVE, actor="bob")

    assert excinfo.value.code == "needs_login"
    assert Account.objects.get(pk=account.pk).status == AccountStatus.NEEDS_LOGIN


def test_account_set_status_reenabling_old_master_refused_while_another_is_master():
    old = MasterAccountFactory(status=AccountStatus.DISABLED)
    MasterAccountFactory()

    with pytest.raises(AccountError) as excinfo:
        account_set_status(account=old, status=AccountStatus.ACTIVE, actor="bob")

    assert excinfo.value.code == "master_exists"


def test_account_give_consent_records_version_and_time():
    account = AccountFactory(consent_given_at=None, consent_version="")

    account_give_consent(account=account, version="2026-01", actor="bob")

    assert account.has_consent
    assert account.consent_version == "2026-01"
    event = ReplicationEvent.objects.get(kind="account.consent_given")
    assert event.data["consent_version"] == {"before": "", "after": "2026-01"}


@pytest.mark.parametrize("version", ["", "v" * 33, None, 5])
def test_account_give_consent_bad_version_refused(version):
    account = AccountFactory(consent_given_at=None, consent_version="")

    with pytest.raises(AccountError):
        account_give_consent(account=account, version=version, actor="bob")

    assert not Account.objects.get(pk=account.pk).has_consent


# --- credentials and audit secrecy ----------------------------------------------------------------


def test_account_set_credentials_audit_names_fields_never_values():
    account = KiteAccountFactory(status=AccountStatus.NEEDS_LOGIN)

    account_set_credentials(account=account, actor="bob", api_secret=API_SECRET, access_token=ACCESS_TOKEN)

    assert account.status == AccountStatus.ACTIVE
    assert account.secret("access_token") == ACCESS_TOKEN
    event = ReplicationEvent.objects.get(kind="account.credentials_changed")
    assert event.data["api_secret"] == {"before": "***", "after": "***"}
    assert "api_key" not in event.data
    assert "api_secret" in event.message


def test_account_set_credentials_default_expiry_is_next_0600_ist():
    account = KiteAccountFactory()

    account_set_credentials(account=account, actor="bob", access_token=ACCESS_TOKEN)

    expiry = account.token_expires_at.astimezone(UTC)
    assert (expiry.hour, expiry.minute) == (0, 30)  # 06:00 IST
    assert timedelta(0) < expiry - account.token_obtained_at <= timedelta(days=1)


def test_account_set_credentials_refused_for_paper():
    account = AccountFactory()

    with pytest.raises(AccountError) as excinfo:
        account_set_credentials(account=account, actor="bob", access_token=ACCESS_TOKEN)

    assert excinfo.value.code == "credentials_not_allowed"


def test_account_audit_rows_never_contain_secret_plaintext_or_ciphertext():
    account, _ = account_link(
        broker="kite",
        user_id="ZK77",
        api_key=API_KEY,
        api_secret=API_SECRET,
        access_token=ACCESS_TOKEN,
        actor="cli",
    )
    account_set_credentials(
        account=account, actor="bob", api_secret="rotatedsecret555", access_token="newtoken777"
    )
    account_set_credentials(account=account, actor="bob", access_token="")
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key, api_secret FROM accounts_account WHERE id = %s", [account.pk])
        ciphertexts = [value for value in cursor.fetchone() if value]

    text = _all_audit_text()
    assert ReplicationEvent.objects.filter(account=account).count() == 3
    assert "***" in text
    for secret in (API_KEY, API_SECRET, ACCESS_TOKEN, "rotatedsecret555", "newtoken777", *ciphertexts):
        assert secret not in text


def test_kite_token_expiry_is_the_next_0600_ist():
    before_six = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 05:30 IST
    after_six = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 06:30 IST

    assert kite_token_expiry(before_six) == datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    assert kite_token_expiry(after_six) == datetime(2026, 3, 3, 0, 30, tzinfo=UTC)


# --- broker access -----------------------------------------------------------------------------------


def test_account_broker_client_passes_decrypted_credentials(monkeypatch):
    fake = install_fake_broker(monkeypatch)
    account = KiteAccountFactory(api_key=API_KEY, access_token=ACCESS_TOKEN, proxy_url="http://proxy:3128")

    client = account_broker_client(account=Account.objects.get(pk=account.pk))

    assert client is fake
    creds = fake.seen[0]
    assert (creds.broker, creds.user_id, creds.api_key, creds.access_token, creds.proxy_url) == (
        "kite",
        account.broker_user_id,
        API_KEY,
        ACCESS_TOKEN,
        "http://proxy:3128",
    )


def test_account_broker_client_wrong_key_raises_clear_error(monkeypatch, rotate_key):
    install_fake_broker(monkeypatch)
    account = KiteAccountFactory(access_token=ACCESS_TOKEN)
    rotate_key([Fernet.generate_key().decode()])

    with pytest.raises(CredentialDecryptError, match="cannot be decrypted"):
        account_broker_client(account=Account.objects.get(pk=account.pk))


def test_account_refresh_margins_stores_a_snapshot(monkeypatch):
    install_fake_broker(monkeypatch, used=Decimal("300000"), available=Decimal("700000.50"))
    account = AccountFactory()

    snapshot = account_refresh_margins(account=account)

    stored = MarginSnapshot.objects.get(pk=snapshot.pk)
    assert stored.account_id == account.pk
    assert (stored.used_margin, stored.available_margin, stored.capital) == (
        Decimal("300000"),
        Decimal("700000.50"),
        Decimal("1000000.50"),
    )


# --- selectors -----------------------------------------------------------------------------------------


def test_account_get_master_ignores_a_disabled_master():
    MasterAccountFactory(status=AccountStatus.DISABLED)
    assert selectors.account_get_master() is None

    master = MasterAccountFactory()
    assert selectors.account_get_master() == master


def test_account_list_children_eligible_only_needs_consent_and_enabled():
    MasterAccountFactory()
    eligible = AccountFactory()
    paused = AccountFactory(status=AccountStatus.PAUSED)
    no_consent = AccountFactory(consent_given_at=None)
    disabled = AccountFactory(status=AccountStatus.DISABLED)

    assert list(selectors.account_list_children(eligible_only=True)) == [eligible, paused]
    assert list(selectors.account_list_children(eligible_only=False)) == [
        eligible,
        paused,
        no_consent,
        disabled,
    ]


def test_account_get_by_pk():
    account = AccountFactory(owner=UserFactory())

    assert selectors.account_get(pk=account.pk) == account
    with pytest.raises(Account.DoesNotExist):
        selectors.account_get(pk=account.pk + 1000)
