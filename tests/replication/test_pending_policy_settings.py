"""The pending-order policy settings (DESIGN §3.5) end to end on the accounts side: service checks and
audit, the REST API (staff and client rules), the admin form, `link_account` and the dashboard."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import MARKET_AFTER_SECONDS_MAX, Account, PendingPolicy
from accounts.services import AccountError, account_settings_validate, account_update_settings
from brokers.paper.models import PaperAccount
from replication.models import ReplicationEvent
from tests.api_helpers import API
from tests.factories import AccountFactory, StaffFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("PEND1", "PP1")


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


MARKET = PendingPolicy.MARKET_AFTER_SECONDS


def _detail(account: Account) -> str:
    return f"{API}/accounts/{account.pk}"


def _settings_events() -> list[ReplicationEvent]:
    return list(ReplicationEvent.objects.filter(kind="account.settings_updated").order_by("id"))


# --- service ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"pending_policy": "leave"}, {"pending_policy": "leave"}),
        ({"pending_policy": "market_after_seconds"}, {"pending_policy": "market_after_seconds"}),
        ({"market_after_seconds": 0}, {"market_after_seconds": 0}),
        ({"market_after_seconds": 90}, {"market_after_seconds": 90}),
        (
            {"market_after_seconds": MARKET_AFTER_SECONDS_MAX},
            {"market_after_seconds": MARKET_AFTER_SECONDS_MAX},
        ),
        ({"market_after_seconds": " 45 "}, {"market_after_seconds": 45}),
        ({"market_after_seconds": 30.0}, {"market_after_seconds": 30}),
        ({"market_after_seconds": Decimal("15")}, {"market_after_seconds": 15}),
    ],
)
def test_account_settings_validate_accepts_pending_policy_values(fields, expected):
    cleaned = account_settings_validate(account=AccountFactory(), **fields)

    assert {name: cleaned[name] for name in expected} == expected
    assert all(type(cleaned[name]) is type(value) for name, value in expected.items())


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"pending_policy": "cancel"}, "invalid_pending_policy"),
        ({"pending_policy": "LEAVE"}, "invalid_pending_policy"),
        ({"pending_policy": 1}, "invalid_pending_policy"),
        ({"pending_policy": None}, "invalid_pending_policy"),
        ({"market_after_seconds": -1}, "invalid_seconds"),
        ({"market_after_seconds": MARKET_AFTER_SECONDS_MAX + 1}, "invalid_seconds"),
        ({"market_after_seconds": True}, "invalid_seconds"),
        ({"market_after_seconds": 1.5}, "invalid_seconds"),
        ({"market_after_seconds": float("nan")}, "invalid_seconds"),
        ({"market_after_seconds": float("inf")}, "invalid_seconds"),
        ({"market_after_seconds": "1.5"}, "invalid_seconds"),
        ({"market_after_seconds": "60s"}, "invalid_seconds"),
        ({"market_after_seconds": "1e3"}, "invalid_seconds"),
        ({"market_after_seconds": ""}, "invalid_seconds"),
        ({"market_after_seconds": Decimal("2.5")}, "invalid_seconds"),
        ({"market_after_seconds": [60]}, "invalid_seconds"),
        ({"market_after_seconds": None}, "invalid_seconds"),
    ],
)
def test_account_update_settings_refuses_bad_pending_policy_values(fields, code):
    account = AccountFactory()
    row = Account.objects.filter(pk=account.pk).values().get()
    events = ReplicationEvent.objects.count()

    with pytest.raises(AccountError) as excinfo:
        account_update_settings(account=account, actor="bob", **fields)

    assert excinfo.value.code == code
    assert set(excinfo.value.fields) == set(fields)
    assert Account.objects.filter(pk=account.pk).values().get() == row
    assert ReplicationEvent.objects.count() == events


def test_account_settings_invalid_pending_policy_message_lists_the_choices():
    with pytest.raises(AccountError) as excinfo:
        account_settings_validate(account=None, pending_policy="cancel")

    assert "leave" in excinfo.value.message and "market_after_seconds" in excinfo.value.message


def test_account_update_settings_audits_pending_policy_before_and_after():
    account = AccountFactory()
    assert (account.pending_policy, account.market_after_seconds) == (PendingPolicy.LEAVE, 60)

    account_update_settings(account=account, actor="bob", pending_policy=MARKET, market_after_seconds=120)

    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.pending_policy, fresh.market_after_seconds) == (MARKET, 120)
    event = ReplicationEvent.objects.get(kind="account.settings_updated", account=account)
    assert event.actor == "bob"
    assert event.data == {
        "pending_policy": {"before": "leave", "after": "market_after_seconds"},
        "market_after_seconds": {"before": 60, "after": 120},
    }


def test_account_update_settings_unchanged_pending_policy_writes_no_audit_row():
    account = AccountFactory()

    account_update_settings(account=account, actor="bob", pending_policy="leave", market_after_seconds=60)

    assert _settings_events() == []


# --- API ------------------------------------------------------------------------------------------


def test_api_staff_sets_pending_policy_on_any_account(people):
    account = AccountFactory(owner=people.alice)

    response = people.as_staff.patch(
        _detail(account),
        {"pending_policy": "market_after_seconds", "market_after_seconds": 45},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["pending_policy"], body["market_after_seconds"]) == ("market_after_seconds", 45)
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.pending_policy, fresh.market_after_seconds) == (MARKET, 45)
    [event] = _settings_events()
    assert event.actor == "operator"
    assert event.data["market_after_seconds"] == {"before": 60, "after": 45}


def test_api_account_detail_shows_pending_policy(people):
    account = AccountFactory(owner=people.alice, pending_policy=MARKET, market_after_seconds=5)

    body = people.as_alice.get(_detail(account)).json()

    assert (body["pending_policy"], body["market_after_seconds"]) == ("market_after_seconds", 5)


def test_api_client_sets_pending_policy_either_way_on_its_own_account(people):
    account = AccountFactory(owner=people.alice)

    on = people.as_alice.patch(
        _detail(account), {"pending_policy": "market_after_seconds", "market_after_seconds": 0}, format="json"
    )
    assert on.status_code == 200, on.json()
    assert Account.objects.get(pk=account.pk).market_after_seconds == 0
    # set by staff: the client may still move it back (a preference, not a risk limit)
    people.as_staff.patch(_detail(account), {"market_after_seconds": 30}, format="json")
    back = people.as_alice.patch(
        _detail(account), {"pending_policy": "leave", "market_after_seconds": 600}, format="json"
    )

    assert back.status_code == 200, back.json()
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.pending_policy, fresh.market_after_seconds) == (PendingPolicy.LEAVE, 600)
    assert [event.actor for event in _settings_events()] == ["alice", "operator", "alice"]


def test_api_client_cannot_set_pending_policy_on_another_clients_account(people):
    account = AccountFactory(owner=people.bob)

    response = people.as_alice.patch(
        _detail(account), {"pending_policy": "market_after_seconds", "market_after_seconds": 5}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.pending_policy, fresh.market_after_seconds) == (PendingPolicy.LEAVE, 60)
    assert _settings_events() == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"pending_policy": "cancel"}, "invalid_pending_policy"),
        ({"pending_policy": None}, "invalid_pending_policy"),
        ({"pending_policy": 1}, "invalid_type"),
        ({"market_after_seconds": -5}, "invalid_seconds"),
        ({"market_after_seconds": MARKET_AFTER_SECONDS_MAX + 1}, "invalid_seconds"),
        ({"market_after_seconds": None}, "invalid_seconds"),
        ({"market_after_seconds": 2.5}, "invalid"),
        ({"market_after_seconds": "soon"}, "invalid"),
        ({"market_after_seconds": True}, "invalid"),
        ({"pending_policy": "market_after_seconds", "market_after_seconds": -1}, "invalid_seconds"),
    ],
)
def test_api_invalid_pending_policy_refused_with_error_shape(people, body, code):
    account = AccountFactory(owner=people.alice)
    row = Account.objects.filter(pk=account.pk).values().get()

    response = people.as_alice.patch(_detail(account), body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()
    assert set(error) == {"code", "message", "fields"}
    assert error["code"] == code
    assert set(error["fields"]) & set(body)
    assert Account.objects.filter(pk=account.pk).values().get() == row
    assert _settings_events() == []


def test_api_schema_documents_pending_policy(people):
    response = people.as_staff.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schemas = response.json()["components"]["schemas"]
    output = schemas["AccountOutput"]["properties"]
    assert {"pending_policy", "market_after_seconds"} <= set(output)
    patch = next(schema for name, schema in schemas.items() if "AccountSettingsInput" in name)
    assert {"pending_policy", "market_after_seconds"} <= set(patch["properties"])


# --- admin ------------------------------------------------------------------------------------------


def test_admin_change_page_renders_pending_policy_fields(admin_client):
    account = AccountFactory(pending_policy=MARKET, market_after_seconds=75)

    page = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk])).content.decode()

    assert "Pending orders" in page
    assert 'name="pending_policy"' in page
    assert '<option value="market_after_seconds" selected>' in page
    assert 'name="market_after_seconds"' in page and 'value="75"' in page


def test_admin_add_page_lists_pending_policy_fields(admin_client):
    page = admin_client.get(reverse("admin:accounts_account_add")).content.decode()

    assert 'name="pending_policy"' in page and 'name="market_after_seconds"' in page


def _admin_form(account: Account, **overrides: str) -> dict[str, str]:
    data = {
        "display_name": account.display_name,
        "owner": "",
        "proxy_url": "",
        "capital_mode": account.capital_mode,
        "fixed_capital": "",
        "multiplier": str(account.multiplier),
        "pending_policy": account.pending_policy,
        "market_after_seconds": str(account.market_after_seconds),
        "allowed_instruments": "[]",
        "blocked_instruments": "[]",
        "allowed_products": "[]",
    }
    data.update(overrides)
    return data


def test_admin_change_saves_pending_policy_through_the_audited_service(admin_client):
    account = AccountFactory()
    url = reverse("admin:accounts_account_change", args=[account.pk])

    response = admin_client.post(
        url, _admin_form(account, pending_policy="market_after_seconds", market_after_seconds="90")
    )

    assert response.status_code == 302
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.pending_policy, fresh.market_after_seconds) == (MARKET, 90)
    [event] = _settings_events()
    assert event.actor == "admin"
    assert event.data["pending_policy"] == {"before": "leave", "after": "market_after_seconds"}


def test_admin_change_refuses_seconds_above_the_maximum(admin_client):
    account = AccountFactory()
    url = reverse("admin:accounts_account_change", args=[account.pk])

    response = admin_client.post(
        url, _admin_form(account, market_after_seconds=str(MARKET_AFTER_SECONDS_MAX + 1))
    )

    assert response.status_code == 200
    assert Account.objects.get(pk=account.pk).market_after_seconds == 60
    assert _settings_events() == []


def test_admin_add_links_with_pending_policy(admin_client):
    data = _admin_form(
        Account(display_name="Added", capital_mode="total", multiplier=Decimal("1")),
        broker="paper",
        broker_user_id="PEND1",
        pending_policy="market_after_seconds",
        market_after_seconds="15",
    )

    response = admin_client.post(reverse("admin:accounts_account_add"), data)

    assert response.status_code == 302
    account = Account.objects.get(broker_user_id="PEND1")
    assert (account.pending_policy, account.market_after_seconds) == (MARKET, 15)


# --- link_account -----------------------------------------------------------------------------------


def _link(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("link_account", "--broker", "paper", *args, stdout=out)
    return out.getvalue().splitlines()


def test_link_account_sets_pending_policy_and_audits_it():
    lines = _link(
        "--user-id", "PP1", "--pending-policy", "market_after_seconds", "--market-after-seconds", "30"
    )

    account = Account.objects.get(broker_user_id="PP1")
    assert lines[0] == f"account_id={account.pk} created"
    assert (account.pending_policy, account.market_after_seconds) == (MARKET, 30)
    [event] = _settings_events()
    assert event.actor == "cli"
    assert event.data["market_after_seconds"] == {"before": 60, "after": 30}


def test_link_account_bad_seconds_exits_with_one_line_and_writes_nothing():
    with pytest.raises(CommandError) as excinfo:
        _link("--user-id", "PP2", "--market-after-seconds", "ten")

    assert "market_after_seconds" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not Account.objects.filter(broker_user_id="PP2").exists()
    assert ReplicationEvent.objects.count() == 0


# --- dashboard --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "seconds", "shown"),
    [
        (PendingPolicy.LEAVE, 60, "<dt>Pending orders</dt><dd>leave open</dd>"),
        (MARKET, 90, "<dt>Pending orders</dt><dd>MARKET after 90 s</dd>"),
    ],
)
def test_child_detail_shows_pending_policy(client, policy, seconds, shown):
    client.force_login(StaffFactory(username="ops"))
    child = AccountFactory(pending_policy=policy, market_after_seconds=seconds)

    response = client.get(reverse("dashboard:child", args=[child.pk]))

    assert response.status_code == 200
    assert shown in response.content.decode()
