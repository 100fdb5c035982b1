"""Who may open what in the client portal (/my/), for every portal URL and both methods.

The portal's URL conf is walked, so a new portal page or action is covered here (or fails here)
without editing this file:
- another client's account id answers 404 on GET and on POST, and changes nothing (no audit row);
- anonymous users are sent to the login page, whatever the method;
- the owner gets each page, and each action answers POST only (405 on GET);
- staff-only pages refuse clients (dashboards 403, admin back to the portal, metrics 403, API
  staff operations 403), and `/` sends each kind of user to its home.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Account, AccountStatus
from replication.models import ReplicationEvent
from tests.factories import AccountFactory, KiteAccountFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pass-for-tests-only"  # UserFactory's
# What each action is sent, so that it would change the account were it allowed.
ACTION_DATA = {
    "limits": {"max_lots_per_order": "1", "block_instrument": ""},
    "pause": {},
    "resume": {},
    "consent": {"agree": "on"},
    "consent_withdraw": {},
}


def portal_patterns() -> list[URLPattern]:
    namespaces = [
        p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and p.namespace == "portal"
    ]
    assert len(namespaces) == 1, "the portal URLs are included once under the 'portal' namespace"
    return [p for p in namespaces[0].url_patterns if isinstance(p, URLPattern)]


def _url(pattern: URLPattern, pk: int) -> str:
    kwargs = {name: pk for name in pattern.pattern.converters}
    assert set(kwargs) <= {"pk"}, f"{pattern.name}: add a test value for {set(kwargs) - {'pk'}}"
    return reverse(f"portal:{pattern.name}", kwargs=kwargs)


def _pages() -> list[URLPattern]:
    return [p for p in portal_patterns() if p.name not in ACTION_DATA]


def _actions() -> list[URLPattern]:
    return [p for p in portal_patterns() if p.name in ACTION_DATA]


@pytest.fixture
def people():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    mine = AccountFactory(owner=alice, broker_user_id="ALICE1", display_name="Alice's account")
    theirs = AccountFactory(
        owner=bob,
        broker_user_id="BOB1",
        display_name="Bob's account",
        status=AccountStatus.PAUSED,
        max_lots_per_order=5,
    )
    return alice, bob, mine, theirs


def _state(account: Account) -> tuple:
    account.refresh_from_db()
    return (
        account.status,
        account.consent_given_at,
        account.consent_version,
        account.max_lots_per_order,
        list(account.blocked_instruments),
    )


def test_portal_url_walk_finds_every_page_and_action():
    names = {p.name for p in portal_patterns()}
    assert names == {"home", "account", *ACTION_DATA}, "a new portal URL: add it to ACTION_DATA or the pages"


def test_portal_sends_anonymous_users_to_login_on_every_url(client, people):
    _, _, mine, _ = people
    for pattern in portal_patterns():
        url = _url(pattern, mine.pk)
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, (url, method)
            assert response["Location"].startswith("/login/?next="), url
    assert _state(mine)[0] == AccountStatus.ACTIVE


@pytest.mark.parametrize("method", ["get", "post"])
def test_portal_answers_404_for_another_clients_account_on_every_url(client, people, method):
    alice, _, _, theirs = people
    client.force_login(alice)
    before = _state(theirs)
    events = ReplicationEvent.objects.count()
    for pattern in portal_patterns():
        if "pk" not in pattern.pattern.converters:
            continue
        url = _url(pattern, theirs.pk)
        data = ACTION_DATA.get(pattern.name, {})
        response = client.get(url) if method == "get" else client.post(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
        assert b"Bob" not in response.content
    assert _state(theirs) == before
    assert ReplicationEvent.objects.count() == events


def test_portal_answers_404_for_an_account_nobody_owns_and_for_a_missing_id(client, people):
    alice, *_ = people
    unowned = AccountFactory(owner=None, broker_user_id="NOBODY")
    client.force_login(alice)
    for pattern in portal_patterns():
        if "pk" in pattern.pattern.converters:
            assert client.get(_url(pattern, unowned.pk)).status_code == 404, pattern.name
            assert client.post(_url(pattern, 999999), ACTION_DATA.get(pattern.name, {})).status_code == 404


def test_portal_staff_see_only_accounts_they_own_too(client, people):
    """The portal is nobody's window on other accounts: staff use /staff/ for those."""
    _, _, mine, _ = people
    client.force_login(StaffFactory(username="desk"))
    for pattern in portal_patterns():
        if "pk" in pattern.pattern.converters:
            assert client.get(_url(pattern, mine.pk)).status_code == 404, pattern.name
    home = client.get(reverse("portal:home"))
    assert home.status_code == 200 and b"Alice" not in home.content


def test_portal_serves_every_page_to_the_owner_and_actions_are_post_only(client, people):
    alice, _, mine, _ = people
    client.force_login(alice)
    for pattern in _pages():
        response = client.get(_url(pattern, mine.pk))
        assert response.status_code == 200, pattern.name
        assert b"Alice&#x27;s account" in response.content
        assert b"Bob" not in response.content
    for pattern in _actions():
        assert client.get(_url(pattern, mine.pk)).status_code == 405, pattern.name


def test_portal_home_lists_only_the_users_own_accounts(client, people):
    _, bob, mine, theirs = people
    client.force_login(bob)
    body = client.get(reverse("portal:home")).content.decode()
    assert "Bob&#x27;s account" in body and reverse("portal:account", args=[theirs.pk]) in body
    assert "Alice" not in body and reverse("portal:account", args=[mine.pk]) not in body


def test_kite_daily_login_of_another_clients_account_is_404(client, people):
    alice, bob, *_ = people
    kite = KiteAccountFactory(owner=bob)
    client.force_login(alice)
    assert client.get(reverse("kite:login", args=[kite.pk])).status_code == 404


# --- Staff-only pages refuse clients ------------------------------------------------------------


def test_staff_dashboards_refuse_a_client_with_403(client, people):
    alice, *_ = people
    client.force_login(alice)
    for name in ("overview", "log", "reconcile", "charts"):
        assert client.get(reverse(f"dashboard:{name}")).status_code == 403, name
    assert client.post(reverse("dashboard:control", args=["paused"]), {"on": "1"}).status_code == 403


def test_admin_sends_a_signed_in_client_back_to_the_portal(client, people):
    alice, *_ = people
    client.force_login(alice)
    response = client.get("/admin/")
    assert response.status_code == 302
    followed = client.get(response["Location"], follow=True)
    assert followed.redirect_chain[-1][0] == reverse("portal:home")
    assert client.get(reverse("admin:accounts_account_changelist")).status_code == 302


def test_metrics_refuse_a_client(client, people):
    alice, *_ = people
    client.force_login(alice)
    assert client.get("/metrics").status_code == 403


def test_api_staff_operations_refuse_a_client(client, people):
    alice, _, mine, _ = people
    client.force_login(alice)
    response = client.post(f"/api/v1/accounts/{mine.pk}/promote-master", content_type="application/json")
    assert response.status_code == 403


# --- `/` leads to the right home ----------------------------------------------------------------


def test_root_sends_anonymous_users_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("login")


def test_root_sends_a_client_to_the_portal(client, people):
    client.force_login(people[0])
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("portal:home")


def test_root_sends_staff_to_the_dashboards_and_the_admins_view_site_link_works(client):
    client.force_login(StaffFactory(username="desk"))
    admin_index = client.get(reverse("admin:index")).content.decode()
    assert 'href="/"' in admin_index  # "View site"
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:overview")


def test_login_sends_a_client_to_the_portal(client, people):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("portal:home")
    assert "Alice&#x27;s account" in response.content.decode()


def test_limits_of_another_clients_account_stay_as_they_were(client, people):
    """The one write a client would most want on someone else's account: loosening it."""
    alice, _, _, theirs = people
    client.force_login(alice)
    client.post(reverse("portal:limits", args=[theirs.pk]), {"max_lots_per_order": "50"})
    theirs.refresh_from_db()
    assert theirs.max_lots_per_order == 5
    assert theirs.max_order_value is None and theirs.daily_loss_limit != Decimal("1")


def test_portal_home_reads_in_a_fixed_number_of_queries(client, people, django_assert_max_num_queries):
    alice, *_ = people
    for n in range(5):
        AccountFactory(owner=alice, broker_user_id=f"ALICE{n + 2}")
    client.force_login(alice)
    with django_assert_max_num_queries(6):
        response = client.get(reverse("portal:home"))
    assert response.content.decode().count("data-account=") == 6
