"""Accounts API behaviour: link, read, settings (and the client rules), status, consent, promote, unlink."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Account, AccountStatus, CapitalMode, Role
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument
from replication.models import ReplicationEvent
from replication.sizing.records import ChildProfile
from tests.api_helpers import (
    API,
    API_KEY,
    API_SECRET,
    seed_allocation,
)
from tests.dashboard_factories import MarginSnapshotFactory
from tests.factories import AccountFactory, KiteAccountFactory, MasterAccountFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("AB9", "FORBOB", "LOOSE1", "MASTER1", "PA77", "TIGHT1", "X9")


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


def _detail(account):
    return f"{API}/accounts/{account.pk}"


def _events(kind):
    return list(ReplicationEvent.objects.filter(kind=kind).order_by("id"))


# --- link ---------------------------------------------------------------------------------------------


def test_api_link_paper_account_without_credentials_owned_by_caller(people):
    response = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "paper", "user_id": "PA77", "name": "Alice paper", "consent": True},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["created"] is True and body["login_url"] is None
    account = Account.objects.get(pk=body["account"]["id"])
    assert (account.owner, account.role, account.has_consent) == (people.alice, Role.CHILD, True)
    assert body["account"]["owner"] == "alice"
    event = ReplicationEvent.objects.get(kind="account.linked")
    assert event.actor == "alice"
    assert event.data["broker_user_id"] == {"before": None, "after": "PA77"}


def test_api_link_kite_without_token_returns_login_url(people):
    response = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "kite", "user_id": "ab1234", "api_key": API_KEY, "api_secret": API_SECRET},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    account = Account.objects.get(pk=body["account"]["id"])
    assert body["login_url"] == f"/accounts/{account.pk}/kite/login/"
    assert body["account"]["broker_user_id"] == "AB1234"
    assert (body["account"]["has_api_key"], body["account"]["has_access_token"]) == (True, False)
    assert body["account"]["login_required"] is True
    assert account.secret("api_secret") == API_SECRET


def test_api_link_kite_with_live_token_has_no_login_url(people):
    """A vouched-for Kite account (staff link it for alice) with a live token needs no login."""
    response = people.as_staff.post(
        f"{API}/accounts/link",
        {
            "broker": "kite",
            "user_id": "AB9",
            "owner": "alice",
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "access_token": "livetoken123456",
        },
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["account"]["ownership"] == "vouched"
    assert response.json()["login_url"] is None
    assert response.json()["account"]["token_expires_at"] is not None


def test_api_client_kite_claim_with_live_token_still_gets_the_login_url(people):
    """Issue 12 item 3: a client's own Kite link is a pending claim even with a token: the answer
    carries the login URL whose broker login will prove it."""
    response = people.as_alice.post(
        f"{API}/accounts/link",
        {
            "broker": "kite",
            "user_id": "AB9",
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "access_token": "livetoken123456",
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["account"]["ownership"] == "pending"
    assert body["login_url"] and f"/accounts/{body['account']['id']}/kite/login/" in body["login_url"]


def test_api_relink_own_account_updates_it(people):
    account = AccountFactory(owner=people.alice, display_name="old")

    response = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "paper", "user_id": account.broker_user_id, "name": "new"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["created"] is False
    assert Account.objects.get(pk=account.pk).display_name == "new"


def test_api_staff_links_for_a_user_and_the_first_master(people):
    as_user = people.as_staff.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "FORBOB", "owner": "bob"}, format="json"
    )
    as_master = people.as_staff.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "MASTER1", "master": True}, format="json"
    )
    unknown_owner = people.as_staff.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "X9", "owner": "nobody"}, format="json"
    )

    assert as_user.status_code == 201 and as_user.json()["account"]["owner"] == "bob"
    assert as_master.status_code == 201 and as_master.json()["account"]["role"] == "master"
    assert unknown_owner.status_code == 400 and unknown_owner.json()["fields"] == {"owner": "no such user"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"capital_mode": "fixed", "fixed_capital": "100000"}, "capital_mode"),
        ({"multiplier": "2"}, "multiplier"),
    ],
)
def test_api_client_link_cannot_loosen_defaults(people, payload, field):
    response = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "LOOSE1", **payload}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "loosening_refused"
    assert field in response.json()["fields"]
    assert not Account.objects.filter(broker_user_id="LOOSE1").exists()


def test_api_client_link_may_choose_stricter_settings(people):
    response = people.as_alice.post(
        f"{API}/accounts/link",
        {"broker": "paper", "user_id": "TIGHT1", "capital_mode": "available", "multiplier": "0.5"},
        format="json",
    )

    assert response.status_code == 201
    account = Account.objects.get(broker_user_id="TIGHT1")
    assert (account.capital_mode, account.multiplier) == (CapitalMode.AVAILABLE, Decimal("0.5"))


# --- read -------------------------------------------------------------------------------------------


def test_api_detail_shows_credential_state_not_values(people):
    account = KiteAccountFactory(owner=people.alice, proxy_url="http://user:hunter2pass@10.0.0.1:3128")

    body = people.as_alice.get(_detail(account)).json()

    assert (body["has_api_key"], body["has_api_secret"], body["has_access_token"]) == (True, True, True)
    assert not {"api_key", "api_secret", "access_token"} & set(body)
    assert body["proxy_url"] == "http://user:***@10.0.0.1:3128"


def test_api_list_is_paginated(people):
    AccountFactory.create_batch(3, owner=people.alice)

    body = people.as_alice.get(f"{API}/accounts?limit=2").json()

    assert body["count"] == 3
    assert len(body["results"]) == 2 and body["next"]


# --- settings ---------------------------------------------------------------------------------------


def test_api_staff_patch_settings_audited_with_before_and_after(people):
    account = AccountFactory(owner=people.alice)

    response = people.as_staff.patch(
        _detail(account),
        {
            "multiplier": "2.5",
            "max_quantity": 900,
            "allowed_products": ["nrml"],
            "capital_mode": "fixed",
            "fixed_capital": "250000",
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["multiplier"], body["max_quantity"], body["allowed_products"]) == ("2.5000", 900, ["NRML"])
    assert (body["capital_mode"], body["fixed_capital"]) == ("fixed", "250000.00")
    event = ReplicationEvent.objects.get(kind="account.settings_updated")
    assert event.actor == "operator"
    assert event.data["multiplier"] == {"before": "1.0000", "after": "2.5000"}
    assert event.data["max_quantity"] == {"before": None, "after": 900}


def test_api_client_may_tighten_its_own_limits(people):
    account = AccountFactory(owner=people.alice, max_quantity=900, multiplier=Decimal("2"))

    response = people.as_alice.patch(
        _detail(account),
        {
            "max_quantity": 300,
            "multiplier": "1.5",
            "max_open_positions": 4,
            "blocked_instruments": [],
            "capital_mode": "available",
            "dry_run": True,
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    account.refresh_from_db()
    assert (account.max_quantity, account.multiplier, account.max_open_positions) == (300, Decimal("1.5"), 4)
    assert (account.capital_mode, account.dry_run) == (CapitalMode.AVAILABLE, True)
    assert ReplicationEvent.objects.get(kind="account.settings_updated").actor == "alice"


@pytest.mark.parametrize(
    ("stored", "change"),
    [
        ({"max_quantity": 300}, {"max_quantity": 301}),
        ({"max_quantity": 300}, {"max_quantity": None}),
        ({"daily_loss_limit": Decimal("5000")}, {"daily_loss_limit": "6000"}),
        ({"multiplier": Decimal("1")}, {"multiplier": "1.01"}),
        ({"capital_mode": CapitalMode.TOTAL}, {"capital_mode": "fixed", "fixed_capital": "100000"}),
        ({"capital_mode": CapitalMode.AVAILABLE}, {"capital_mode": "total"}),
        ({"capital_mode": CapitalMode.FIXED, "fixed_capital": Decimal("1000")}, {"fixed_capital": "2000"}),
        ({"capital_mode": CapitalMode.FIXED, "fixed_capital": Decimal("1000")}, {"capital_mode": "total"}),
        ({"allowed_products": ["NRML"]}, {"allowed_products": ["NRML", "MIS"]}),
        ({"allowed_products": ["NRML"]}, {"allowed_products": []}),
        ({"blocked_instruments": ["NFO:NIFTY25DECFUT"]}, {"blocked_instruments": []}),
        ({"dry_run": True}, {"dry_run": False}),
        ({}, {"proxy_url": "http://10.0.0.9:3128"}),
    ],
)
def test_api_client_cannot_loosen_staff_set_limits(people, stored, change):
    PaperInstrument.objects.create(
        exchange="NFO", tradingsymbol="NIFTY25DECFUT", instrument_type=InstrumentType.FUT, segment="NFO-FUT"
    )
    account = AccountFactory(owner=people.alice, **stored)
    events = ReplicationEvent.objects.count()

    response = people.as_alice.patch(_detail(account), change, format="json")

    assert response.status_code == 403, response.json()
    assert response.json()["code"] == "loosening_refused"
    assert set(change) & set(response.json()["fields"])
    assert ReplicationEvent.objects.count() == events
    fresh = Account.objects.get(pk=account.pk)
    for name, value in stored.items():
        assert getattr(fresh, name) == value
    # staff may do the same
    assert people.as_staff.patch(_detail(account), change, format="json").status_code == 200


def test_api_client_may_undo_its_own_dry_run(people):
    account = AccountFactory(owner=people.alice)

    on = people.as_alice.patch(_detail(account), {"dry_run": True}, format="json")
    off = people.as_alice.patch(_detail(account), {"dry_run": False}, format="json")

    assert (on.status_code, off.status_code) == (200, 200)
    assert Account.objects.get(pk=account.pk).dry_run is False


def test_api_patch_instruments_must_exist_on_the_paper_exchange(people):
    PaperInstrument.objects.create(
        exchange="NFO", tradingsymbol="NIFTY25DECFUT", instrument_type=InstrumentType.FUT, segment="NFO-FUT"
    )
    account = AccountFactory(owner=people.alice)

    known = people.as_staff.patch(
        _detail(account), {"allowed_instruments": ["nfo:nifty25decfut"]}, format="json"
    )
    unknown = people.as_staff.patch(
        _detail(account), {"allowed_instruments": ["NFO:NIFTY25DECFUT", "NFO:NOSUCHFUT"]}, format="json"
    )

    assert known.status_code == 200 and known.json()["allowed_instruments"] == ["NFO:NIFTY25DECFUT"]
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_instrument"
    assert "NFO:NOSUCHFUT" in unknown.json()["fields"]["allowed_instruments"]
    assert Account.objects.get(pk=account.pk).allowed_instruments == ["NFO:NIFTY25DECFUT"]


def test_api_patch_paper_filters_accept_an_underlying_the_paper_exchange_lists(people):
    """Issue 15: an underlying (`NIFTY` on any exchange, `NFO:NIFTY`) is a filter entry when a
    paper instrument has that underlying (there); one no instrument has is still refused."""
    PaperInstrument.objects.create(
        exchange="NFO",
        tradingsymbol="NIFTY25DECFUT",
        underlying="NIFTY",
        instrument_type=InstrumentType.FUT,
        segment="NFO-FUT",
    )
    account = AccountFactory(owner=people.alice)

    known = people.as_staff.patch(
        _detail(account),
        {"allowed_instruments": ["NIFTY"], "blocked_instruments": ["nfo:nifty"]},
        format="json",
    )
    unknown = people.as_staff.patch(
        _detail(account), {"blocked_instruments": ["BFO:NIFTY", "NOSUCH"]}, format="json"
    )

    assert known.status_code == 200, known.json()
    assert (known.json()["allowed_instruments"], known.json()["blocked_instruments"]) == (
        ["NIFTY"],
        ["NFO:NIFTY"],
    )
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_instrument"
    assert all(key in unknown.json()["fields"]["blocked_instruments"] for key in ("BFO:NIFTY", "NOSUCH"))


def test_api_patch_kite_instruments_only_need_to_be_well_formed(people):
    account = KiteAccountFactory(owner=people.alice)

    response = people.as_staff.patch(
        _detail(account), {"allowed_instruments": ["NFO:ANYTHING25FUT"]}, format="json"
    )

    assert response.status_code == 200


# --- status -----------------------------------------------------------------------------------------


def test_api_client_pauses_and_resumes_its_own_pause(people):
    account = AccountFactory(owner=people.alice)

    paused = people.as_alice.patch(_detail(account), {"status": "paused", "reason": "away"}, format="json")
    resumed = people.as_alice.patch(_detail(account), {"status": "active"}, format="json")

    assert (paused.status_code, resumed.status_code) == (200, 200)
    rows = _events("account.status_changed")
    assert [(r.actor, r.data["status"]["before"], r.data["status"]["after"]) for r in rows] == [
        ("alice", "active", "paused"),
        ("alice", "paused", "active"),
    ]
    assert rows[0].data["reason"] == "away"


def test_api_client_cannot_resume_a_staff_halt(people):
    account = AccountFactory(owner=people.alice)
    people.as_staff.patch(_detail(account), {"status": "halted", "reason": "risk review"}, format="json")

    response = people.as_alice.patch(_detail(account), {"status": "active"}, format="json")

    assert response.status_code == 403
    assert "status" in response.json()["fields"]
    assert Account.objects.get(pk=account.pk).status == AccountStatus.HALTED


@pytest.mark.parametrize("target", ["disabled", "needs_login"])
def test_api_client_cannot_set_staff_statuses(people, target):
    account = AccountFactory(owner=people.alice)

    response = people.as_alice.patch(_detail(account), {"status": target}, format="json")

    assert response.status_code == 403
    assert Account.objects.get(pk=account.pk).status == AccountStatus.ACTIVE


def test_api_patch_is_all_or_nothing(people):
    account = KiteAccountFactory(owner=people.alice, status=AccountStatus.PAUSED, access_token="")
    events = ReplicationEvent.objects.count()

    response = people.as_staff.patch(
        _detail(account), {"display_name": "renamed", "status": "active"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "needs_login"
    assert Account.objects.get(pk=account.pk).display_name == account.display_name
    assert ReplicationEvent.objects.count() == events


def test_api_patch_credentials_audited_without_values(people):
    account = KiteAccountFactory(owner=people.alice)

    response = people.as_alice.patch(_detail(account), {"api_secret": "rotatedsecret998877"}, format="json")

    assert response.status_code == 200
    assert "rotatedsecret998877" not in response.content.decode()
    event = ReplicationEvent.objects.get(kind="account.credentials_changed")
    assert (event.actor, event.data) == ("alice", {"api_secret": {"before": "***", "after": "***"}})
    assert Account.objects.get(pk=account.pk).secret("api_secret") == "rotatedsecret998877"


# --- consent, promote ---------------------------------------------------------------------------------


def test_api_consent_recorded_with_version(people):
    account = AccountFactory(owner=people.alice, consent_given_at=None, consent_version="")

    response = people.as_alice.post(f"{_detail(account)}/consent", {"version": "2026-02"}, format="json")

    assert response.status_code == 200
    assert response.json()["has_consent"] is True and response.json()["consent_version"] == "2026-02"
    event = ReplicationEvent.objects.get(kind="account.consent_given")
    assert event.actor == "alice" and event.data["consent_version"] == {"before": "", "after": "2026-02"}


def test_api_promote_master_demotes_the_old_one_atomically(people):
    old = MasterAccountFactory()
    new = AccountFactory()

    response = people.as_staff.post(f"{_detail(new)}/promote-master")

    assert response.status_code == 200 and response.json()["role"] == "master"
    assert Account.objects.get(pk=old.pk).role == Role.CHILD
    assert Account.objects.filter(role=Role.MASTER).count() == 1
    kinds = {(e.kind, e.actor) for e in ReplicationEvent.objects.all()}
    assert kinds == {("account.master_promoted", "operator"), ("account.master_demoted", "operator")}


def test_api_promote_disabled_account_refused(people):
    account = AccountFactory(status=AccountStatus.DISABLED)

    response = people.as_staff.post(f"{_detail(account)}/promote-master")

    assert response.status_code == 400
    assert response.json()["code"] == "account_disabled"


# --- unlink -------------------------------------------------------------------------------------------


def test_api_unlink_without_positions_disables_and_forgets_credentials(people):
    account = KiteAccountFactory(owner=people.alice)

    response = people.as_alice.delete(_detail(account))

    assert response.status_code == 200
    fresh = Account.objects.get(pk=account.pk)
    assert fresh.status == AccountStatus.DISABLED
    assert (fresh.api_key, fresh.api_secret, fresh.access_token) == ("", "", "")
    event = ReplicationEvent.objects.get(kind="account.unlinked")
    assert event.actor == "alice" and event.data["status"] == {"before": "active", "after": "disabled"}
    assert event.data["api_secret"] == {"before": "***", "after": ""}


def test_api_unlink_refused_while_engine_holds_positions(people):
    master = MasterAccountFactory()
    account = AccountFactory(owner=people.alice)
    seed_allocation(master, account, filled=75)
    events = ReplicationEvent.objects.count()

    by_owner = people.as_alice.delete(_detail(account))
    by_staff = people.as_staff.delete(_detail(account))
    forced_without_reason = people.as_staff.delete(f"{_detail(account)}?force=true")

    assert (by_owner.status_code, by_staff.status_code) == (409, 409)
    assert by_owner.json()["code"] == "positions_held"
    assert "NFO:NIFTY25DECFUT" in by_owner.json()["message"]
    assert forced_without_reason.status_code == 400
    assert forced_without_reason.json()["code"] == "reason_required"
    assert Account.objects.get(pk=account.pk).status == AccountStatus.ACTIVE
    assert ReplicationEvent.objects.count() == events


def test_api_staff_force_unlink_with_reason_keeps_rows(people):
    master = MasterAccountFactory()
    account = AccountFactory(owner=people.alice)
    allocation = seed_allocation(master, account, filled=75)

    response = people.as_staff.delete(f"{_detail(account)}?force=true&reason=client%20left")

    assert response.status_code == 200
    assert Account.objects.get(pk=account.pk).status == AccountStatus.DISABLED
    assert allocation.mappings.filter(child=account).exists()
    event = ReplicationEvent.objects.get(kind="account.unlinked")
    assert (event.actor, event.data["reason"], event.data["forced"]) == ("operator", "client left", True)
    assert event.data["holdings"][0]["held"] == 75


def test_api_unlink_master_needs_force(people):
    master = MasterAccountFactory()

    refused = people.as_staff.delete(_detail(master))
    forced = people.as_staff.delete(f"{_detail(master)}?force=true&reason=switching%20desks")

    assert refused.status_code == 409 and refused.json()["code"] == "master_unlink"
    assert forced.status_code == 200


def test_api_unlink_twice_is_harmless(people):
    account = AccountFactory(owner=people.alice)

    people.as_alice.delete(_detail(account))
    again = people.as_alice.delete(_detail(account))

    assert again.status_code == 200
    assert ReplicationEvent.objects.filter(kind="account.unlinked").count() == 1


def test_api_expired_kite_token_shows_login_required(people):
    account = KiteAccountFactory(owner=people.alice, token_expires_at=timezone.now() - timedelta(hours=1))

    assert people.as_alice.get(_detail(account)).json()["login_required"] is True


def test_api_list_queries_do_not_grow_with_accounts(people, django_assert_max_num_queries):
    AccountFactory.create_batch(2, owner=people.bob)
    with django_assert_max_num_queries(10) as captured:
        assert people.as_staff.get(f"{API}/accounts").status_code == 200
    few = len(captured.captured_queries)
    AccountFactory.create_batch(20, owner=people.alice)
    with django_assert_max_num_queries(few):
        assert len(people.as_staff.get(f"{API}/accounts").json()["results"]) == 22


# --- funds (issue 14 item 3) ----------------------------------------------------------------------


def test_api_accounts_show_the_sizing_capital_with_its_mode_and_the_margin(people):
    """GET /api/v1/accounts: the capital that sizes each account (and which mode says so) and the
    margin of its latest snapshot; an account never read says null, and no secret is shown."""
    fixed = AccountFactory(
        owner=people.alice,
        capital_mode=CapitalMode.FIXED,
        fixed_capital=Decimal("1000000.00"),
        multiplier=Decimal("0.5"),
        api_key="never-shown-key",
    )
    total = AccountFactory(owner=people.alice)
    unread = AccountFactory(owner=people.alice, capital_mode=CapitalMode.AVAILABLE)
    MarginSnapshotFactory(
        account=fixed, used_margin=Decimal("200000.00"), available_margin=Decimal("1300000.00")
    )
    old = MarginSnapshotFactory(account=total, used_margin=Decimal("1.00"), available_margin=Decimal("1.00"))
    old.taken_at = timezone.now() - timedelta(minutes=5)
    old.save(update_fields=["taken_at"])
    latest = MarginSnapshotFactory(
        account=total, used_margin=Decimal("150000.00"), available_margin=Decimal("350000.50")
    )

    response = people.as_alice.get(f"{API}/accounts")

    assert response.status_code == 200
    rows = {row["id"]: row for row in response.json()["results"]}
    assert rows[fixed.pk]["capital"] == {"sizing": "1000000.00", "mode": "fixed"}  # not the ₹15,00,000
    assert rows[fixed.pk]["margin"]["used"] == "200000.00"
    assert rows[fixed.pk]["margin"]["available"] == "1300000.00"
    assert rows[total.pk]["capital"] == {"sizing": "500000.50", "mode": "total"}  # U + A, latest
    assert rows[total.pk]["margin"] == {
        "used": "150000.00",
        "available": "350000.50",
        "as_of": latest.taken_at.isoformat().replace("+00:00", "Z"),
    }
    assert rows[unread.pk]["capital"] == {"sizing": None, "mode": "available"}
    assert rows[unread.pk]["margin"] == {"used": None, "available": None, "as_of": None}
    assert "never-shown-key" not in response.content.decode()
    # The same figures on one account, read without the list's annotations.
    assert people.as_alice.get(_detail(total)).json()["capital"] == rows[total.pk]["capital"]
    assert people.as_bob.get(_detail(total)).status_code == 404  # someone else's funds stay hidden


@pytest.mark.parametrize("mode", list(CapitalMode))
@pytest.mark.parametrize("read", [True, False])
def test_api_sizing_capital_is_the_sizing_rules_capital(people, mode, read):
    """The API's figure is the one sizing uses (replication.sizing's ChildProfile.capital)."""
    account = AccountFactory(
        owner=people.alice,
        capital_mode=mode,
        fixed_capital=Decimal("750000.00") if mode == CapitalMode.FIXED else None,
    )
    used, available = Decimal("123456.78"), Decimal("654321.00")
    if read:
        MarginSnapshotFactory(account=account, used_margin=used, available_margin=available)
    expected = ChildProfile(
        child_id=account.pk,
        capital_mode=mode,
        used=used if read else None,
        available=available if read else None,
        fixed_capital=account.fixed_capital,
    ).capital()

    sizing = people.as_alice.get(_detail(account)).json()["capital"]["sizing"]

    assert sizing == (None if expected is None else f"{expected:.2f}")


def test_api_schema_describes_capital_and_margin(people):
    schema = people.as_staff.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    account = schema["components"]["schemas"]["AccountOutput"]["properties"]
    assert {"capital", "margin"} <= set(account)
    capital = schema["components"]["schemas"]["CapitalOutput"]["properties"]
    margin = schema["components"]["schemas"]["MarginOutput"]["properties"]
    assert set(capital) == {"sizing", "mode"} and set(margin) == {"used", "available", "as_of"}
