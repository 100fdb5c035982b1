"""`manage.py seed_demo`: idempotent demo data, the staff password shown exactly once."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts.models import Account, Broker, CapitalMode, Role
from brokers.paper.models import PaperAccount
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

PASSWORD_LINE = re.compile(r"Staff login \(shown once\): staff / (\S+)")


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_creates_staff_master_and_five_consenting_children():
    output = _seed()
    match = PASSWORD_LINE.search(output)
    assert match is not None
    staff = get_user_model().objects.get(username="staff")
    assert staff.is_staff
    assert staff.is_superuser
    assert staff.check_password(match.group(1))

    accounts = {a.broker_user_id: a for a in Account.objects.all()}
    assert sorted(accounts) == ["CHILD1", "CHILD2", "CHILD3", "CHILD4", "CHILD5", "MASTER1"]
    assert all(a.broker == Broker.PAPER and a.has_consent and a.is_enabled for a in accounts.values())
    assert [a.broker_user_id for a in accounts.values() if a.role == Role.MASTER] == ["MASTER1"]
    c4 = accounts["CHILD4"]
    assert (c4.capital_mode, c4.fixed_capital, c4.multiplier) == (
        CapitalMode.FIXED,
        Decimal("1000000.00"),
        Decimal("0.5"),
    )
    cash = dict(PaperAccount.objects.values_list("user_id", "cash"))
    assert cash == {
        "MASTER1": Decimal("1000000.00"),
        "CHILD1": Decimal("500000.00"),
        "CHILD2": Decimal("2000000.00"),
        "CHILD3": Decimal("250000.00"),
        "CHILD4": Decimal("1500000.00"),
        "CHILD5": Decimal("700000.00"),
    }
    for user_id in cash:
        assert re.search(rf"^{user_id} .* created$", output, re.MULTILINE)  # one table row each


def test_seed_demo_twice_creates_nothing_new_and_hides_password():
    first = _seed()
    password = PASSWORD_LINE.search(first).group(1)
    before = list(Account.objects.order_by("id").values_list("id", "broker_user_id", "role", "multiplier"))
    PaperAccount.objects.filter(user_id="CHILD1").update(cash=Decimal("123.45"))  # traded since

    second = _seed()

    assert PASSWORD_LINE.search(second) is None
    assert password not in second
    assert "staff user exists; reset with manage.py changepassword staff" in second
    assert get_user_model().objects.filter(username="staff").count() == 1
    assert get_user_model().objects.get(username="staff").check_password(password)
    after = list(Account.objects.order_by("id").values_list("id", "broker_user_id", "role", "multiplier"))
    assert after == before
    assert PaperAccount.objects.count() == 6
    assert PaperAccount.objects.get(user_id="CHILD1").cash == Decimal("123.45")  # balance kept
    assert re.search(r"^CHILD1 .* exists$", second, re.MULTILINE)


def test_seed_demo_leaves_existing_staff_user_alone():
    StaffFactory(username="staff", password="chosen-by-the-operator")
    output = _seed()
    assert PASSWORD_LINE.search(output) is None
    assert get_user_model().objects.get(username="staff").check_password("chosen-by-the-operator")


CLIENT_LINE = re.compile(r"Client login \(shown once\): client / (\S+)  at (\S+)")


def test_seed_demo_creates_a_client_who_owns_child2_and_signs_in_to_the_portal(client):
    """Issue 14: `make run`'s demo shows the client portal: a `client` user (not staff), its
    password shown once, owner of CHILD2; signing in lands on its portal, which lists CHILD2 only."""
    output = _seed()
    match = CLIENT_LINE.search(output)
    assert match is not None and match.group(2).endswith("/my/")
    user = get_user_model().objects.get(username="client")
    assert not user.is_staff and user.check_password(match.group(1))
    assert list(Account.objects.filter(owner=user).values_list("broker_user_id", flat=True)) == ["CHILD2"]
    response = client.post("/login/", {"username": "client", "password": match.group(1)})
    assert response.status_code == 302 and response["Location"] == "/my/"
    page = client.get("/my/").content.decode()
    assert "CHILD2" in page and "CHILD1" not in page
    second = _seed()
    assert CLIENT_LINE.search(second) is None and match.group(1) not in second
    assert get_user_model().objects.get(username="client").check_password(match.group(1))
