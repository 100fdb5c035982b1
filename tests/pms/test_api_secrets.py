"""A seeded secret (and its ciphertext) appears in no API response and no admin page."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage

from accounts.models import Account, Broker
from brokers.models import BrokerInstrument
from brokers.paper.services import paper_order_place
from replication.alerts.models import Alert, AlertCursor, AlertDelivery, AlertKind, AlertSubscription, Channel
from replication.models import (
    EngineControl,
    MarginSnapshot,
    MasterPosition,
    OrchestratorLease,
    ReplicationEvent,
    TickRun,
)
from tests.api_helpers import (
    ACCESS_TOKEN,
    API,
    API_KEY,
    API_SECRET,
    ciphertexts,
    install_fake_broker,
    seed_allocation,
)
from tests.engine_helpers import FUT, build_desk
from tests.factories import AccountFactory, KiteAccountFactory

pytestmark = pytest.mark.django_db

PROXY_PASSWORD = "proxypassw0rd99"
LINKED_SECRET = "linkedviaapisecret5566"
ROTATED_SECRET = "rotatedsecret77889900"
# Angel One's headless login: the client's PIN and TOTP secret, write-only like every credential.
ANGEL_PIN = "86420531"
ANGEL_TOTP = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
ROTATED_PIN = "97531864"
ROTATED_TOTP = "MFRGGZDFMZTWQ2LKMFRGGZDFMZTWQ2LK"
LINKED_PIN = "24681357"
LINKED_TOTP = "ONSWG4TFOQYTEMZUONSWG4TFOQYTEMZU"
ANGEL_SECRETS = (ANGEL_PIN, ANGEL_TOTP, ROTATED_PIN, ROTATED_TOTP, LINKED_PIN, LINKED_TOTP)


@pytest.fixture
def seeded(people, monkeypatch):
    """Kite accounts with known credentials, an engine run on the paper desk, one row of everything."""
    install_fake_broker(monkeypatch, **{FUT: 75})
    desk = build_desk()
    kite = KiteAccountFactory(
        owner=people.alice,
        api_key=API_KEY,
        api_secret=API_SECRET,
        access_token=ACCESS_TOKEN,
        proxy_url=f"http://proxyuser:{PROXY_PASSWORD}@10.1.2.3:3128",
        display_name="Seeded kite",
    )
    angel = AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A7788",
        owner=people.alice,
        api_key=API_KEY,
        access_token=ACCESS_TOKEN,
        pin=ANGEL_PIN,
        totp_secret=ANGEL_TOTP,
        display_name="Seeded angel",
    )
    allocation = seed_allocation(desk.master, kite, filled=75)
    paper_order_place(
        user_id="MASTER",
        exchange="NFO",
        tradingsymbol=FUT,
        side="BUY",
        quantity=75,
        product="NRML",
        order_type="MARKET",
    )
    MarginSnapshot.objects.create(account=kite, used_margin=1, available_margin=2, capital=3)
    MasterPosition.objects.create(
        account=desk.master, exchange="NFO", tradingsymbol=FUT, product="NRML", quantity=75
    )
    TickRun.objects.create(outcome=TickRun.Outcome.OK, duration_ms=3)
    OrchestratorLease.objects.create(holder="host:1", epoch=1)
    EngineControl.objects.create()
    Group.objects.create(name="desk")
    Schedule.objects.create(func="replication.tasks.reconcile", schedule_type=Schedule.MINUTES, minutes=5)
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=f"task{int(success)}".ljust(32, "0"),
            name=f"task-{success}",
            func="math.floor",
            started=now,
            stopped=now,
            success=success,
            result="ok" if success else "boom",
        )
    OrmQ.objects.create(
        key="pms",
        payload=SignedPackage.dumps(
            {"id": "q1", "name": "queued", "func": "math.floor", "args": (1,), "kwargs": {}}
        ),
    )
    # one alert of the seeded account, its subscription, delivery and the scanner's cursor
    subscription = AlertSubscription.objects.create(
        user=people.alice, channel=Channel.TELEGRAM, address="4242"
    )
    alert = Alert.objects.create(
        kind=AlertKind.LOGIN_MISSING,
        scope=f"account:{kite.pk}",
        account=kite,
        closes_at=now,
        subject="Broker login missing",
        message="Seeded kite needs a login",
    )
    AlertDelivery.objects.create(
        alert=alert,
        subscription=subscription,
        channel=Channel.TELEGRAM,
        address="4242",
        subject=alert.subject,
        body=alert.message,
        last_error="connection refused",
    )
    AlertCursor.objects.create()
    # one row of Angel's instrument master, as the day's listing stores it
    BrokerInstrument.objects.create(
        broker="angel",
        exchange="NFO",
        symbol=FUT,
        underlying="NIFTY",
        instrument_type="FUT",
        lot_size=75,
        broker_token="35001",
        trading_day=now.date(),
    )
    # audit rows about credentials, from the API
    people.as_alice.patch(f"{API}/accounts/{kite.pk}", {"api_secret": ROTATED_SECRET}, format="json")
    people.as_alice.patch(f"{API}/accounts/{kite.pk}", {"api_secret": API_SECRET}, format="json")
    people.as_alice.patch(
        f"{API}/accounts/{angel.pk}", {"pin": ROTATED_PIN, "totp_secret": ROTATED_TOTP}, format="json"
    )
    people.as_alice.patch(
        f"{API}/accounts/{angel.pk}", {"pin": ANGEL_PIN, "totp_secret": ANGEL_TOTP}, format="json"
    )
    assert ReplicationEvent.objects.filter(kind="account.credentials_changed").count() == 4
    return {"kite": kite, "angel": angel, "allocation": allocation, "desk": desk}


def _login_ciphertexts(account):
    """The stored (encrypted) PIN and TOTP secret of an account, straight from the table."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pin, totp_secret FROM accounts_account WHERE id = %s", [account.pk])
        row = cursor.fetchone()
    return [value for value in row if value]


def _forbidden_strings(accounts):
    found = [API_KEY, API_SECRET, ACCESS_TOKEN, PROXY_PASSWORD, LINKED_SECRET, ROTATED_SECRET]
    found += ANGEL_SECRETS
    for account in accounts:
        found += ciphertexts(account) + _login_ciphertexts(account)
    return found


def _assert_clean(label, content, forbidden):
    for secret in forbidden:
        assert secret not in content, f"{label} leaks a credential"


def test_api_responses_never_contain_secrets(people, seeded):
    kite, angel, allocation = seeded["kite"], seeded["angel"], seeded["allocation"]
    responses = {}
    responses["link-angel"] = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "angel", "user_id": "a7799", "api_key": "linkedkey456", "access_token": "eyJ.tok.en1"},
        format="json",
    )
    responses["link-angel-bad-pin"] = people.as_alice.post(
        f"{API}/accounts/link",
        {
            "broker": "angel",
            "user_id": "A7799",
            "pin": f"{LINKED_PIN}x",
            "totp_secret": LINKED_TOTP,
        },
        format="json",
    )
    responses["link-angel-bad-totp"] = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "angel", "user_id": "A7799", "pin": LINKED_PIN, "totp_secret": f"{LINKED_TOTP}1"},
        format="json",
    )
    responses["rotate-angel"] = people.as_alice.patch(
        f"{API}/accounts/{angel.pk}", {"pin": ROTATED_PIN, "totp_secret": ROTATED_TOTP}, format="json"
    )
    responses["rotate-angel-back"] = people.as_alice.patch(
        f"{API}/accounts/{angel.pk}", {"pin": ANGEL_PIN, "totp_secret": ANGEL_TOTP}, format="json"
    )
    responses["angel-detail"] = people.as_alice.get(f"{API}/accounts/{angel.pk}")
    linked = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "kite", "user_id": "LINKED1", "api_key": "linkedkey123", "api_secret": LINKED_SECRET},
        format="json",
    )
    assert linked.status_code == 201
    responses["link"] = linked
    responses["relink"] = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "kite", "user_id": "LINKED1", "api_secret": LINKED_SECRET, "access_token": "tok123456789"},
        format="json",
    )
    responses["link-bad-secret"] = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "kite", "user_id": "LINKED2", "api_key": API_KEY, "api_secret": f"{API_SECRET}!"},
        format="json",
    )
    responses["rotate"] = people.as_alice.patch(
        f"{API}/accounts/{kite.pk}", {"api_secret": ROTATED_SECRET}, format="json"
    )
    responses["rotate-back"] = people.as_alice.patch(
        f"{API}/accounts/{kite.pk}", {"api_secret": API_SECRET}, format="json"
    )
    responses["bad-token"] = people.as_alice.patch(
        f"{API}/accounts/{kite.pk}", {"access_token": f"{ACCESS_TOKEN} <x>"}, format="json"
    )
    for who, client in (("staff", people.as_staff), ("alice", people.as_alice)):
        responses[f"{who}-list"] = client.get(f"{API}/accounts")
        responses[f"{who}-detail"] = client.get(f"{API}/accounts/{kite.pk}")
        responses[f"{who}-events"] = client.get(f"{API}/replication/events")
        responses[f"{who}-allocation"] = client.get(f"{API}/replication/allocations/{allocation.pk}")
        responses[f"{who}-positions"] = client.get(f"{API}/accounts/{kite.pk}/positions")
        responses[f"{who}-schema"] = client.get("/api/schema/")
        responses[f"{who}-docs"] = client.get("/api/docs/")
    responses["consent"] = people.as_alice.post(f"{API}/accounts/{kite.pk}/consent", {}, format="json")
    responses["pause"] = people.as_alice.patch(
        f"{API}/accounts/{kite.pk}", {"status": "paused"}, format="json"
    )
    responses["unlink-refused"] = people.as_alice.delete(f"{API}/accounts/{kite.pk}")

    assert responses["staff-positions"].json()["positions"][0]["actual"] == 75  # the fake broker was read
    assert responses["link-bad-secret"].status_code == 400
    assert responses["link-angel"].status_code == 201
    assert responses["link-angel-bad-pin"].status_code == 400
    assert responses["link-angel-bad-totp"].status_code == 400
    assert responses["rotate-angel"].json()["has_pin"] is True
    assert responses["angel-detail"].json()["has_totp_secret"] is True
    assert responses["unlink-refused"].status_code == 409
    forbidden = _forbidden_strings(Account.objects.all())
    assert len(forbidden) > 6  # the ciphertexts are in the list too
    for label, response in responses.items():
        assert response.status_code < 500, label
        _assert_clean(label, response.content.decode(), forbidden)


def test_api_audit_rows_never_contain_secrets(people, seeded):
    kite, angel = seeded["kite"], seeded["angel"]
    people.as_alice.patch(
        f"{API}/accounts/{angel.pk}", {"pin": ROTATED_PIN, "totp_secret": ROTATED_TOTP}, format="json"
    )
    angel_rows = list(ReplicationEvent.objects.filter(account=angel).values_list("message", "data"))
    assert any("pin, totp_secret" in message for message, _ in angel_rows)
    _assert_clean("angel audit rows", repr(angel_rows), _forbidden_strings([angel]))
    people.as_alice.patch(f"{API}/accounts/{kite.pk}", {"api_secret": ROTATED_SECRET}, format="json")
    people.as_staff.patch(
        f"{API}/accounts/{kite.pk}", {"proxy_url": f"http://u:{PROXY_PASSWORD}x@10.9.9.9:1"}, format="json"
    )
    people.as_staff.delete(f"{API}/accounts/{kite.pk}?force=true&reason=test")

    rows = list(ReplicationEvent.objects.filter(account=kite).values_list("kind", "actor", "message", "data"))

    assert {kind for kind, *_ in rows} >= {
        "account.credentials_changed",
        "account.settings_updated",
        "account.unlinked",
    }
    assert {actor for _, actor, *_ in rows} == {"alice", "operator"}
    _assert_clean("audit rows", repr(rows), _forbidden_strings([kite]))


def test_admin_pages_never_contain_secrets(admin_client, seeded):
    forbidden = _forbidden_strings(Account.objects.all())
    visited = []
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = admin_client.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert changelist.status_code == 200, info
        _assert_clean(f"{info} changelist", changelist.content.decode(), forbidden)
        row = model_admin.get_queryset(changelist.wsgi_request).first()
        assert row is not None, f"no {info} row seeded: the change page would go unchecked"
        change = admin_client.get(reverse("admin:{}_{}_change".format(*info), args=[row.pk]))
        assert change.status_code == 200, info
        _assert_clean(f"{info} change page", change.content.decode(), forbidden)
        visited.append(info)
    assert ("accounts", "account") in visited and ("replication", "replicationevent") in visited
    for extra in (
        reverse("admin:accounts_account_change", args=[seeded["angel"].pk]),
        reverse("admin:accounts_account_add"),
        reverse("admin:accounts_account_history", args=[seeded["kite"].pk]),
        reverse("admin:index"),
    ):
        _assert_clean(extra, admin_client.get(extra).content.decode(), forbidden)
