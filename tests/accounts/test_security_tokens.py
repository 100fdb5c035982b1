"""API tokens end: they expire, die with a password change, are listed and revoked by their owner
only, and their secret is shown once (at creation) and stored nowhere (issue 12 item 2).

Tokens are obtained the way a client does (POST /api/v1/auth/token with a password) and used as
`Authorization: Token <secret>`.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tests.api_helpers import API

pytestmark = pytest.mark.django_db

PASSWORD = "pass-for-tests-only"  # tests.factories.UserFactory
NEW_PASSWORD = "Tr4de-Copy-Kept-Safe"


def obtain(username: str, password: str = PASSWORD) -> dict:
    response = APIClient().post(
        f"{API}/auth/token", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def as_token(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def assert_refused(secret: str) -> None:
    response = as_token(secret).get(f"{API}/accounts")
    assert response.status_code == 401, response.content
    assert set(response.json()) == {"code", "message", "fields"}
    assert response.json()["code"] == "authentication_failed"
    assert secret not in response.content.decode()


def assert_accepted(secret: str) -> None:
    assert as_token(secret).get(f"{API}/accounts").status_code == 200


def _set_password(user):
    user.set_password(NEW_PASSWORD)
    user.save()


def _reset_form(user):  # what Django's password reset confirm view saves
    form = SetPasswordForm(user, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert form.is_valid(), form.errors
    form.save()


def _change_form(user):  # what Django's password change view saves
    form = PasswordChangeForm(
        user,
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert form.is_valid(), form.errors
    form.save()


def _changepassword_command(user, monkeypatch):
    from django.contrib.auth.management.commands import changepassword

    monkeypatch.setattr(changepassword.getpass, "getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", user.get_username(), stdout=io.StringIO())


def _admin_page(user, admin_client):
    response = admin_client.post(
        reverse("admin:auth_user_password_change", args=[user.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content


PASSWORD_CHANGES = {
    "set_password": lambda user, request: _set_password(user),
    "reset-form": lambda user, request: _reset_form(user),
    "change-form": lambda user, request: _change_form(user),
    "changepassword-command": lambda user, request: _changepassword_command(
        user, request.getfixturevalue("monkeypatch")
    ),
    "admin-page": lambda user, request: _admin_page(user, request.getfixturevalue("admin_client")),
}


@pytest.mark.parametrize("path", PASSWORD_CHANGES)
def test_password_change_ends_every_old_token(people, request, path):
    """Issue 12 item 2: a changed password (any path: set_password, the reset and change forms,
    `changepassword`, the admin page) ends every token issued before; the new password gets a new,
    working token; other users' tokens live on."""
    alice = people.alice
    first, second = obtain("alice")["token"], obtain("alice")["token"]
    bobs = obtain("bob")["token"]
    assert_accepted(first)

    PASSWORD_CHANGES[path](alice, request)

    assert_refused(first)
    assert_refused(second)
    assert_accepted(bobs)
    fresh = obtain("alice", NEW_PASSWORD)["token"]
    assert fresh not in (first, second)
    assert_accepted(fresh)


def test_saving_a_user_without_a_password_change_keeps_tokens(people):
    """Issue 12 item 2: only a password change ends tokens (a login stamp or a rename does not)."""
    secret = obtain("alice")["token"]
    alice = people.alice
    alice.first_name = "Alice"
    alice.save()
    alice.last_login = timezone.now()
    alice.save(update_fields=["last_login"])

    assert_accepted(secret)


def test_token_expires_after_the_configured_ttl(people, settings, monkeypatch):
    """Issue 12 item 2: a token carries an expiry API_TOKEN_TTL_HOURS after its creation and is
    refused (401, usual error shape) once that has passed."""
    settings.API_TOKEN_TTL_HOURS = 2
    before = timezone.now()
    issued = obtain("alice")
    secret = issued["token"]
    expiry = datetime.fromisoformat(issued["expiry"])
    assert before + timedelta(hours=2) <= expiry <= timezone.now() + timedelta(hours=2)

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1, minutes=59))
    assert_accepted(secret)
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=2, seconds=1))
    assert_refused(secret)
    monkeypatch.setattr(timezone, "now", real_now)
    assert_refused(secret)  # an expired token does not come back when the clock does
    assert_accepted(obtain("alice")["token"])


def test_token_endpoint_issues_a_new_token_each_time_and_stores_no_secret(people):
    """Issue 12 item 2: each login gets a new token, and no table holds any token's secret (only
    a hash of it)."""
    secrets = [obtain("alice")["token"] for _ in range(3)]

    assert len(set(secrets)) == 3
    for secret in secrets:
        assert_accepted(secret)
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 (table names from the schema)
            dump = repr(cursor.fetchall())
            for secret in secrets:
                assert secret not in dump, f"{table} stores a token secret"


def test_owner_lists_own_tokens_without_secrets(people):
    """Issue 12 item 2: GET /auth/tokens lists the caller's own live tokens (id, short prefix,
    created, expiry, which one is in use), never a secret, never another user's token."""
    fixture_ids = {row["id"] for row in people.as_alice.get(f"{API}/auth/tokens").json()["results"]}
    assert len(fixture_ids) == 1  # the token the `people` fixture gave alice
    first, second = obtain("alice"), obtain("alice")
    bobs = obtain("bob")
    staffs = obtain("operator")

    listed = as_token(first["token"]).get(f"{API}/auth/tokens")

    assert listed.status_code == 200, listed.content
    rows = [row for row in listed.json()["results"] if row["id"] not in fixture_ids]
    assert {row["id"] for row in rows} == {first["id"], second["id"]}
    assert listed.json()["count"] == 3
    assert all(set(row) == {"id", "prefix", "created", "expiry", "current"} for row in rows)
    assert [row["id"] for row in rows if row["current"]] == [first["id"]]
    body = listed.content.decode()
    for issued in (first, second, bobs, staffs):
        assert issued["token"] not in body
    for row in rows:
        assert 4 <= len(row["prefix"]) <= 8
        assert first["token"].startswith(row["prefix"]) or second["token"].startswith(row["prefix"])
    staff_ids = {row["id"] for row in as_token(staffs["token"]).get(f"{API}/auth/tokens").json()["results"]}
    assert staffs["id"] in staff_ids  # staff too see only their own
    assert not staff_ids & {first["id"], second["id"], bobs["id"], *fixture_ids}


def test_owner_revokes_own_token_and_nobody_else_can(people):
    """Issue 12 item 2: DELETE /auth/tokens/<id> ends that token of the caller's; another client's
    or staff's attempt on it is a 404 and changes nothing."""
    kept, doomed = obtain("alice"), obtain("alice")
    bobs, staffs = obtain("bob"), obtain("operator")

    for other in (bobs, staffs):
        refused = as_token(other["token"]).delete(f"{API}/auth/tokens/{doomed['id']}")
        assert refused.status_code == 404, refused.content
        assert set(refused.json()) == {"code", "message", "fields"}
    assert_accepted(doomed["token"])

    revoked = as_token(kept["token"]).delete(f"{API}/auth/tokens/{doomed['id']}")

    assert revoked.status_code == 204, revoked.content
    assert_refused(doomed["token"])
    assert_accepted(kept["token"])
    assert_accepted(bobs["token"])
    again = as_token(kept["token"]).delete(f"{API}/auth/tokens/{doomed['id']}")
    assert again.status_code == 404


def test_owner_revokes_the_token_in_use(people):
    """Issue 12 item 2: a client can end the token it is calling with (a logout)."""
    issued = obtain("alice")

    response = as_token(issued["token"]).delete(f"{API}/auth/tokens/{issued['id']}")

    assert response.status_code == 204
    assert_refused(issued["token"])


def test_admin_shows_no_token_secret_and_mints_none(people, admin_client):
    """Issue 12 item 2: no admin page shows a token's secret (so staff cannot act as a client), and
    the admin cannot create a token for someone (it would show staff the new secret)."""
    secrets = [obtain(name)["token"] for name in ("alice", "bob")]
    token_models = [model for model in admin.site._registry if "token" in model._meta.model_name]
    pages = [reverse("admin:index")]
    for model in token_models:
        info = (model._meta.app_label, model._meta.model_name)
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        for row in model._default_manager.all():
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[row.pk]))
        add = admin_client.get(reverse("admin:{}_{}_add".format(*info)))
        assert add.status_code == 403, f"{info}: the admin can mint tokens"

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        for secret in secrets:
            assert secret not in response.content.decode(), f"{page} shows a token secret"
            assert secret[:12] not in response.content.decode(), f"{page} shows most of a token"
