"""Issue 12 item 4: the product's own login page; an owner (a client, not staff) signs in there and
does the Kite daily login for their own account, never for someone else's."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import Account, AccountStatus
from lab.kite_sim.server import start as start_sim
from tests.factories import AccountFactory, KiteAccountFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pass-for-tests-only"
API_KEY = "kiteapikey01"
API_SECRET = "kiteapisecret0123456789"


@pytest.fixture(autouse=True)
def no_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner():
    return UserFactory(username="olivia")


@pytest.fixture
def account(owner) -> Account:
    return KiteAccountFactory(
        broker_user_id="AB1234",
        display_name="Olivia's Kite",
        owner=owner,
        status=AccountStatus.NEEDS_LOGIN,
        access_token="",
        api_key=API_KEY,
        api_secret=API_SECRET,
    )


def test_login_url_is_the_products_login_page():
    """Issue 12 item 4: LOGIN_URL is the product's login page, not the staff-only admin login."""
    assert settings.LOGIN_URL == "/login/" == reverse("login")


def test_owner_signs_in_on_the_product_page_and_does_their_own_kite_daily_login(owner, account):
    """Issue 12 item 4: a non-staff owner, sent to the login page by the Kite login link, signs in
    there, comes back to `/accounts/<id>/kite/login/`, logs in at Kite (the simulator) and the
    callback stores the session: the account is active."""
    browser = Client()
    start = reverse("kite:login", args=[account.pk])
    to_login = browser.get(start)
    assert to_login.status_code == 302
    login_page = to_login["Location"]
    assert login_page.startswith("/login/?next=")
    assert browser.get(login_page).status_code == 200

    signed_in = browser.post(login_page, {"username": "olivia", "password": PASSWORD})
    assert signed_in.status_code == 302, signed_in.content
    assert signed_in["Location"] == start

    running = start_sim()
    try:
        running.sim.store.register_app(
            api_key=API_KEY,
            api_secret=API_SECRET,
            redirect_url="http://testserver/accounts/kite/callback/",
            user_id="AB1234",
        )
        with override_settings(KITE_LOGIN_URL=f"{running.root}/connect/login", KITE_API_ROOT=running.root):
            to_kite = browser.get(start)
            assert to_kite.status_code == 302
            from_kite = requests.get(to_kite["Location"], allow_redirects=False, timeout=5)
            assert from_kite.status_code in (301, 302, 303, 307)
            back = urlsplit(from_kite.headers["Location"])
            assert back.path == reverse("kite:callback")
            done = browser.get(f"{back.path}?{back.query}")
    finally:
        running.stop()
    assert done.status_code == 200, done.content
    assert b"Kite login complete" in done.content
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert account.secret("access_token")


def test_owner_cannot_start_or_complete_the_kite_login_of_someone_elses_account(owner, account):
    """Issue 12 item 4: signed in through the product page, a client gets 404 for another owner's
    Kite account, and a callback naming that account (with a state of its own) changes nothing."""
    other = KiteAccountFactory(
        owner=UserFactory(username="mallory"),
        status=AccountStatus.NEEDS_LOGIN,
        access_token="",
        api_key="otherapikey9",
        api_secret="otherapisecret01234567",
    )
    browser = Client()
    assert browser.post("/login/", {"username": "olivia", "password": PASSWORD}).status_code == 302

    assert browser.get(reverse("kite:login", args=[other.pk])).status_code == 404
    own = browser.get(reverse("kite:login", args=[account.pk]))
    state = parse_qs(parse_qs(urlsplit(own["Location"]).query)["redirect_params"][0])["state"][0]
    forged = browser.get(
        reverse("kite:callback"),
        {"request_token": "x" * 32, "status": "success", "account": str(other.pk), "state": state},
    )
    assert forged.status_code in (400, 404)
    other.refresh_from_db()
    assert other.status == AccountStatus.NEEDS_LOGIN
    assert not other.secret("access_token")


def test_clients_land_on_a_page_of_their_own_accounts_with_each_kite_login_link(owner, account):
    """Issue 12 item 4: after signing in a client lands on their own accounts, each Kite account
    with its daily login link; other people's accounts are not listed."""
    paper = AccountFactory(owner=owner, broker_user_id="PAPER77", display_name="Olivia paper")
    other = KiteAccountFactory(owner=UserFactory(), display_name="Not Olivia's")
    browser = Client()

    signed_in = browser.post("/login/", {"username": "olivia", "password": PASSWORD})
    assert signed_in.status_code == 302
    page = browser.get(signed_in["Location"])

    assert page.status_code == 200
    html = page.content.decode()
    assert "Olivia&#x27;s Kite" in html and "Olivia paper" in html
    assert f'href="/accounts/{account.pk}/kite/login/"' in html
    assert f"/accounts/{paper.pk}/kite/login/" not in html
    assert "Not Olivia" not in html and f"/accounts/{other.pk}/" not in html


def test_staff_land_on_the_staff_dashboard():
    """Issue 12 item 4: staff signing in on the product page land on /staff/."""
    StaffFactory(username="boss")
    response = Client().post("/login/", {"username": "boss", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/staff/"


def test_wrong_password_on_the_product_page_is_a_form_error():
    """Issue 12 item 4: a wrong password shows the form again with an error and signs nobody in."""
    UserFactory(username="olivia")
    browser = Client()
    response = browser.post("/login/", {"username": "olivia", "password": "wrong"})

    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert "_auth_user_id" not in browser.session


def test_logout_ends_the_session_and_returns_to_the_login_page(owner):
    """Issue 12 item 4: POST /logout/ signs out and shows the login page."""
    browser = Client()
    browser.post("/login/", {"username": "olivia", "password": PASSWORD})
    assert "_auth_user_id" in browser.session

    response = browser.post("/logout/")

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert "_auth_user_id" not in browser.session
    assert browser.get("/my/")["Location"].startswith("/login/")


def test_admin_login_sends_clients_to_the_product_login_with_a_message(owner):
    """Issue 12 item 4: a client's right password at /admin/login/ is not a dead end: it goes to
    the product login page with a message saying the admin is for staff; no session is made."""
    browser = Client()
    response = browser.post(
        "/admin/login/", {"username": "olivia", "password": PASSWORD, "next": "/admin/"}, follow=True
    )

    assert response.redirect_chain[0] == ("/login/", 302)
    assert "The admin is for staff" in response.content.decode()
    assert "_auth_user_id" not in browser.session


def test_signed_in_clients_opening_the_admin_land_on_their_accounts(owner, account):
    """Issue 12 item 4: a signed-in client who opens /admin/ is sent to their own accounts page,
    with the same message, instead of the admin's 'not authorised' login form."""
    browser = Client()
    browser.post("/login/", {"username": "olivia", "password": PASSWORD})

    response = browser.get("/admin/", follow=True)

    assert response.redirect_chain[-1][0] == "/my/"
    html = response.content.decode()
    assert "The admin is for staff" in html
    assert f"/accounts/{account.pk}/kite/login/" in html


def test_staff_still_sign_in_at_the_admin():
    """Issue 12 item 4: staff sign in at /admin/login/ as before."""
    StaffFactory(username="boss")
    browser = Client()
    response = browser.post("/admin/login/", {"username": "boss", "password": PASSWORD, "next": "/admin/"})

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200
