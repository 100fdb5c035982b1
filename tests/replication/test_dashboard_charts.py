"""The server-rendered SVG charts and the presentation maths behind the log (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.template import Context, Template
from django.utils import timezone

from replication.dashboard.charts import (
    inr,
    latency_buckets,
    latency_histogram,
    nice_ceiling,
    percentile,
    success_bars,
    time_series,
)
from replication.dashboard.selectors import master_average_price, slippage
from tests.dashboard_factories import MasterOrderFactory

T0 = datetime(2025, 12, 1, 3, 45, tzinfo=UTC)  # 09:15 IST


def test_inr_groups_digits_the_indian_way():
    assert inr(Decimal("1000000")) == "₹10,00,000"
    assert inr(Decimal("12345678.456"), places=2) == "₹1,23,45,678.46"
    assert inr(Decimal("-750")) == "-₹750"
    assert inr(Decimal("0")) == "₹0"


def test_template_filters_format_money_for_the_desk():
    values = {"capital": Decimal("1500000.40"), "price": Decimal("20001.5"), "pnl": Decimal("-1234.5")}
    rendered = Template(
        "{% load dashboard_format %}{{ capital|inr }} {{ price|indian }} {{ pnl|inr:2 }} {{ missing|inr }}"
    ).render(Context(values))
    assert rendered == "₹15,00,000 20,001.50 -₹1,234.50 –"


def test_time_series_draws_every_point_from_zero_and_labels_the_ends():
    points = [(T0 + timedelta(minutes=m), Decimal(v)) for m, v in ((0, 0), (30, 300000), (60, 150000))]

    with timezone.override(ZoneInfo("Asia/Kolkata")):
        svg = str(time_series(points, label="Used margin", width=720))

    assert svg.startswith('<svg class="chart" viewBox="0 0 720 200" role="img" aria-label="Used margin"')
    polyline = svg.split('<polyline points="')[1].split('"')[0].split()
    assert len(polyline) == 3
    xs = [Decimal(p.split(",")[0]) for p in polyline]
    ys = [Decimal(p.split(",")[1]) for p in polyline]
    assert xs == sorted(xs) and xs[0] == Decimal("78.0") and xs[-1] == Decimal("704.0")
    assert ys[1] < ys[2] < ys[0]  # 3 lakh highest on screen, zero at the bottom
    assert ">₹0<" in svg and ">09:15<" in svg and ">10:15<" in svg  # labelled in IST


def test_time_series_axis_tops_out_at_a_round_figure():
    assert nice_ceiling(Decimal("300000")) == Decimal("500000")
    assert nice_ceiling(Decimal("310000")) == Decimal("500000")
    assert nice_ceiling(Decimal("0.3")) == Decimal("0.5")
    assert nice_ceiling(Decimal("7")) == Decimal("10")
    svg = str(time_series([(T0, Decimal(0)), (T0 + timedelta(hours=1), Decimal(0))], label="flat"))
    assert ">₹1,000<" in svg and ">₹500<" in svg  # an all-zero day still gets a readable scale


def test_time_series_with_no_points_says_so():
    assert "no master snapshot today" in str(time_series([], label="x", empty="no master snapshot today"))


def test_chart_text_is_escaped():
    svg = str(success_bars([("<script>alert(1)</script>", 1, 0)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_success_bars_width_follows_the_rate():
    svg = str(success_bars([("C1", 3, 1), ("C2", 0, 2)], width=720))
    # names need the minimum 60 px, "100% (3/4)" 85 px: plot width 720 - 60 - 85 = 575;
    # C1 accepted 3/4 -> 431.25, C2 none
    assert 'width="431.3" height="22" rx="3" fill="#16a34a"' in svg
    assert "75%" in svg and "(3/4)" in svg
    assert 'width="0.0" height="22" rx="3" fill="#16a34a"' in svg and "0%" in svg


def test_latency_buckets_and_percentiles():
    values = [10, 49, 50, 99, 150, 480, 999, 1500, 4000, 12000]
    assert latency_buckets(values) == [
        ("<50", 2),
        ("50–100", 2),
        ("100–200", 1),
        ("200–500", 1),
        ("500–1000", 1),
        ("1000–2000", 1),
        ("2000–5000", 1),
        ("≥5000", 1),
    ]
    assert percentile(values, 50) == 150
    assert percentile(values, 95) == 12000
    assert percentile([], 50) is None
    svg = str(latency_histogram(values))
    assert "n = 10 · p50 150 ms · p95 12000 ms · max 12000 ms" in svg


def test_slippage_is_positive_when_worse_for_the_child():
    assert slippage("BUY", Decimal("100.00"), Decimal("100.50")) == Decimal("0.50")  # paid more
    assert slippage("BUY", Decimal("100.00"), Decimal("99.75")) == Decimal("-0.25")
    assert slippage("SELL", Decimal("100.00"), Decimal("99.00")) == Decimal("1.00")  # sold for less
    assert slippage("SELL", Decimal("100.00"), Decimal("101.00")) == Decimal("-1.00")
    assert slippage("BUY", None, Decimal("1")) is None


def test_master_average_price_is_fill_weighted():
    orders = [
        MasterOrderFactory.build(filled_quantity=75, average_price=Decimal("100")),
        MasterOrderFactory.build(filled_quantity=225, average_price=Decimal("104")),
        MasterOrderFactory.build(filled_quantity=0, average_price=Decimal("0")),
    ]
    assert master_average_price(orders) == Decimal("103.00")
    assert master_average_price([]) is None
