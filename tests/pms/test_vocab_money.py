"""Issue 13 item 6 (said once): one ₹ formatter (pms.money.rupees) for the admin, dashboards and CLI."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from accounts.admin import _rupees
from brokers.management.commands.paper import inr as paper_inr
from pms.money import rupees
from replication.dashboard.charts import inr as chart_inr

D = Decimal


@pytest.mark.parametrize(
    ("amount", "places", "shown"),
    [
        (D("0"), 2, "₹0.00"),
        (D("999"), 2, "₹999.00"),
        (D("1000"), 2, "₹1,000.00"),
        (D("1500000"), 2, "₹15,00,000.00"),
        (D("1234567890.5"), 2, "₹1,23,45,67,890.50"),
        (D("99999.995"), 2, "₹1,00,000.00"),  # halves up
        (D("-123.456"), 2, "-₹123.46"),
        (D("12345678.456"), 0, "₹1,23,45,678"),
        (D("-750"), 0, "-₹750"),
        (D("-0.004"), 2, "₹0.00"),  # rounds to zero: no minus sign
    ],
)
def test_rupees_indian_grouping(amount, places, shown):
    """Issue 13 item 6: the one formatter: Indian grouping, explicit places, halves up."""
    assert rupees(amount, places=places) == shown


def test_rupees_every_surface_uses_the_one_formatter():
    """Issue 13 item 6: the admin, the dashboard charts and filters and the paper CLI agree."""
    amount = D("1234567.5")
    template = Template("{% load dashboard_format %}{{ v|inr:2 }} {{ v|indian }} {{ v|inr }}")

    assert _rupees(amount) == "₹12,34,567.50"
    assert _rupees(None) == "—"
    assert paper_inr(amount) == "12,34,567.50"
    assert chart_inr(amount) == "₹12,34,568"
    assert template.render(Context({"v": amount})) == "₹12,34,567.50 12,34,567.50 ₹12,34,568"
