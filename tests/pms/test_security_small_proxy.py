"""Issue 12 item 6: the admin never shows the proxy URL's password, and keeps it when not retyped."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Account
from replication.models import ReplicationEvent
from tests.factories import KiteAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db

PROXY_PASSWORD = "pr0xyPassw0rd77"
PROXY = f"http://desk:{PROXY_PASSWORD}@proxy.example.in:3128"
MASKED = "http://desk:***@proxy.example.in:3128"


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(StaffFactory(username="ops", is_superuser=True))
    return client


@pytest.fixture
def account() -> Account:
    return KiteAccountFactory(proxy_url=PROXY, display_name="Proxy Client")


def _change_url(account: Account) -> str:
    return reverse("admin:accounts_account_change", args=[account.pk])


def _form_fields(page: str) -> dict[str, str]:
    """The change form as a browser would submit it unchanged: inputs, selects and text areas."""
    data: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if not name or (kind and kind.group(1) in ("submit", "button", "file")):
            continue
        if kind and kind.group(1) == "checkbox":
            if "checked" in tag:
                data[name.group(1)] = "on"
            continue
        value = re.search(r'value="([^"]*)"', tag)
        data[name.group(1)] = unescape(value.group(1)) if value else ""
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S):
        data[name] = unescape(body.strip())
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        data[name] = unescape(chosen.group(1)) if chosen else ""
    return data


def test_admin_change_form_and_list_mask_the_proxy_password(staff_client, account):
    """Issue 12 item 6: the change form shows user:***@host, as the API does; never the password."""
    form = staff_client.get(_change_url(account), secure=True)
    changelist = staff_client.get(reverse("admin:accounts_account_changelist"), secure=True)
    search = staff_client.get(reverse("admin:accounts_account_changelist"), {"q": "Proxy"}, secure=True)

    assert form.status_code == changelist.status_code == search.status_code == 200
    for page in (form, changelist, search):
        assert PROXY_PASSWORD not in page.content.decode()
    assert MASKED in unescape(form.content.decode())


def test_admin_saving_without_retyping_keeps_the_stored_proxy_password(staff_client, account):
    """Issue 12 item 6: submitting the form as shown (masked proxy) keeps the stored password."""
    page = staff_client.get(_change_url(account), secure=True).content.decode()
    data = _form_fields(page)
    assert data["proxy_url"] == MASKED
    data["multiplier"] = "2"

    response = staff_client.post(_change_url(account), data, secure=True)

    assert response.status_code == 302, response.content.decode()[:2000]
    fresh = Account.objects.get(pk=account.pk)
    assert fresh.proxy_url == PROXY
    assert str(fresh.multiplier) == "2.0000"
    assert not ReplicationEvent.objects.filter(data__proxy_url__isnull=False).exists()


def test_admin_a_new_proxy_password_or_host_is_stored(staff_client, account):
    """Issue 12 item 6: a retyped password replaces the stored one; a new host keeps the password."""
    data = _form_fields(staff_client.get(_change_url(account), secure=True).content.decode())

    data["proxy_url"] = "http://desk:***@proxy2.example.in:3128"
    assert staff_client.post(_change_url(account), data, secure=True).status_code == 302
    assert Account.objects.get(pk=account.pk).proxy_url == (
        f"http://desk:{PROXY_PASSWORD}@proxy2.example.in:3128"
    )

    data["proxy_url"] = "http://desk:newSecret55@proxy2.example.in:3128"
    assert staff_client.post(_change_url(account), data, secure=True).status_code == 302
    assert Account.objects.get(pk=account.pk).proxy_url == "http://desk:newSecret55@proxy2.example.in:3128"
