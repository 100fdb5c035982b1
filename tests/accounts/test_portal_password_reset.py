"""Password reset by email: the link from the login page, the email (Django's locmem backend in
tests), the new password, signing in with it; an unknown address sends nothing and says the same."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-password-for-tests-7"


def test_login_page_links_to_the_password_reset(client):
    body = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}"' in body


def test_a_client_resets_its_password_by_email_and_signs_in_with_the_new_one(client):
    user = UserFactory(username="carol", email="carol@example.com")
    AccountFactory(owner=user, display_name="Carol's account")
    response = client.post(reverse("password_reset"), {"email": "carol@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert "Check your email" in client.get(response["Location"]).content.decode()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["carol@example.com"]
    assert message.subject == "Reset your password for the PMS replication desk"
    link = re.search(r"https?://[^/\s]+(/password-reset/\S+/\S+/)", message.body)
    assert link, message.body

    page = client.get(link.group(1), follow=True)  # Django swaps the token into the session
    assert "Choose a new password" in page.content.decode()
    done = client.post(
        page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    assert "Password changed" in client.get(done["Location"]).content.decode()

    signed_in = client.post(reverse("login"), {"username": "carol", "password": NEW_PASSWORD}, follow=True)
    assert signed_in.redirect_chain[-1][0] == reverse("portal:home")
    assert "Carol&#x27;s account" in signed_in.content.decode()


def test_a_reset_link_works_once(client):
    UserFactory(username="carol", email="carol@example.com")
    client.post(reverse("password_reset"), {"email": "carol@example.com"})
    path = re.search(r"https?://[^/\s]+(/password-reset/\S+/\S+/)", mail.outbox[0].body).group(1)
    page = client.get(path, follow=True)
    client.post(page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    again = client.get(path, follow=True)
    assert "This link does not work" in again.content.decode()


def test_an_unknown_address_sends_nothing_and_looks_the_same(client):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


@override_settings(DEBUG=True, EMAIL_HOST="", EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
def test_without_a_mail_server_in_development_the_email_is_printed_on_the_console(client, capsys):
    UserFactory(username="carol", email="carol@example.com")
    response = client.post(reverse("password_reset"), {"email": "carol@example.com"})
    assert response["Location"] == reverse("password_reset_done")
    printed = capsys.readouterr().out
    assert "To: carol@example.com" in printed and "/password-reset/" in printed
