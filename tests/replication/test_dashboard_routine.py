"""Issue 14 item 3 on the staff pages: the overview lists the ticks that did something (not idle
ones), each child's success rate and latency today (by broker once there are several), the capital
that sizes each child with its mode; codes are shown in plain words with the code beside them;
long child names fit the success chart."""

from __future__ import annotations

import re

import pytest
from django.template import Context, Template
from django.urls import reverse

from replication.dashboard.charts import CHAR_W, success_bars
from replication.models import MappingStatus, OrderMapping, TickRun
from replication.templatetags.plain_words import REASONS
from tests.dashboard_factories import OrderMappingFactory
from tests.dashboard_helpers import build_desk, orchestrator, replicate_entry
from tests.factories import KiteAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(username="ops"))
    return client


@pytest.fixture
def desk():
    desk = build_desk()
    with orchestrator() as orch:
        replicate_entry(desk, orch)
        for _ in range(4):
            orch.run_tick()  # idle: nothing happens
    return desk


def _ticks_section(page: str) -> str:
    return page[page.index('id="ticks"') :]


def _row(page: str, child: str) -> str:
    match = re.search(rf'<tr data-child="{child}">(.*?)</tr>', page, re.S)
    assert match, child
    return match.group(1)


def test_overview_lists_ticks_that_did_something_not_idle_ones(staff_client, desk):
    page = staff_client.get(reverse("dashboard:overview")).content.decode()
    ticks = _ticks_section(page)
    listed = {int(pk) for pk in re.findall(r'data-tick="(\d+)"', ticks)}
    busy = {t.pk for t in TickRun.objects.all() if t.counts.get("events") or t.counts.get("updated")}
    idle = {t.pk for t in TickRun.objects.all()} - busy
    assert busy and idle  # the entry tick, its follow-up; the baseline and the idle ticks
    assert listed == busy
    assert "idle ticks are not listed" in ticks


def test_overview_says_so_when_no_tick_did_anything(staff_client):
    build_desk()
    with orchestrator() as orch:
        orch.run_tick()
        orch.run_tick()
    ticks = _ticks_section(staff_client.get(reverse("dashboard:overview")).content.decode())
    assert "data-tick=" not in ticks
    assert "No tick has seen a master event or sent an order" in ticks


def test_overview_shows_each_childs_success_rate_and_latency_today(staff_client, desk):
    sent = OrderMapping.objects.filter(quantity__gt=0)
    sent.filter(child=desk.children["C2"]).update(latency_ms=40)
    sent.filter(child=desk.children["C5"]).update(status=MappingStatus.REJECTED, latency_ms=None)
    OrderMappingFactory(
        allocation=sent.first().allocation, child=desk.children["C2"], slice_no=9, latency_ms=900
    )

    page = staff_client.get(reverse("dashboard:overview")).content.decode()

    c2 = _row(page, "C2")
    assert '100.0% <span class="muted">(2/2)</span>' in c2
    assert "40 / 900 ms" in c2  # p50, p99 (nearest rank)
    assert '0.0% <span class="muted">(0/1)</span>' in _row(page, "C5")
    c3 = _row(page, "C3")  # skipped: no order reached a broker
    assert '<td class="num success-rate">–</td>' in c3 and '<td class="num latency">–</td>' in c3
    assert 'id="brokers"' not in page  # one broker: no table by broker


def test_overview_splits_success_and_latency_by_broker_once_there_are_several(staff_client, desk):
    kite_child = KiteAccountFactory(display_name="Kite child")
    allocation = OrderMapping.objects.filter(quantity__gt=0).first().allocation
    OrderMappingFactory(allocation=allocation, child=kite_child, latency_ms=250)
    OrderMappingFactory(allocation=allocation, child=kite_child, slice_no=1, status=MappingStatus.REJECTED)

    page = staff_client.get(reverse("dashboard:overview")).content.decode()

    section = page[page.index('id="brokers"') : page.index('id="ticks"')]
    kite = re.search(r'<tr data-broker="kite">(.*?)</tr>', section, re.S).group(1)
    assert "50.0%" in kite and "250 ms" in kite
    paper = re.search(r'<tr data-broker="paper">(.*?)</tr>', section, re.S).group(1)
    assert "100.0%" in paper


def test_overview_shows_the_capital_that_sizes_each_child_with_its_mode(staff_client, desk):
    page = staff_client.get(reverse("dashboard:overview")).content.decode()
    c4 = _row(page, "C4")  # fixed ₹10,00,000 on an account of ₹30,00,000
    assert '<b>₹10,00,000</b> <span class="muted">fixed</span>' in c4 and "Fixed allocation" in c4
    assert "account ₹30,00,000, not used for sizing" in c4
    c2 = _row(page, "C2")  # total: U + A of its latest snapshot
    assert '<b>₹20,00,000</b> <span class="muted">total</span>' in c2 and "Total (used + available)" in c2

    detail = staff_client.get(reverse("dashboard:child", args=[desk.children["C4"].pk])).content.decode()
    assert "Sizing capital" in detail and "<b>₹10,00,000</b>" in detail


def test_codes_are_shown_in_plain_words_with_the_code_beside_them(staff_client, desk):
    OrderMapping.objects.filter(child=desk.children["C3"]).update(reason_code="below_one_unit")
    log = staff_client.get(reverse("dashboard:log")).content.decode()
    assert 'below one lot <span class="code mono muted">(below_one_unit)</span>' in log
    assert 'rise in used margin <span class="code mono muted">(delta_u)</span>' in log

    detail = staff_client.get(reverse("dashboard:child", args=[desk.children["C3"].pk])).content.decode()
    assert 'below one lot <span class="code mono muted">(below_one_unit)</span>' in detail
    c2 = staff_client.get(reverse("dashboard:child", args=[desk.children["C2"].pk])).content.decode()
    # Event kinds on the timeline: their words, the code beside them ("sent" is both).
    assert '<span class="kind">order update <span class="code mono muted">(order_update)</span></span>' in c2
    assert '<span class="kind">sent</span>' in c2


def test_plain_filter_escapes_and_leaves_unknown_codes_alone():
    template = Template("{% load plain_words %}{{ a|plain }}|{{ b|plain }}|{{ c|plain:'grade' }}")
    out = template.render(Context({"a": "not_a_code<b>", "b": "max_quantity", "c": "major"}))
    assert out == (
        "not_a_code&lt;b&gt;|capped at the quantity limit "
        '<span class="code mono muted">(max_quantity)</span>|'
        'major drift <span class="code mono muted">(major)</span>'
    )
    assert all(words and words != code for code, words in REASONS.items())


def test_success_chart_fits_long_child_names():
    long_name = "C4 fixed 10,00,000 x0.5"
    svg = str(success_bars([(long_name, 12, 3), ("C1", 1, 0)], width=640))
    name_x = float(re.search(r'<text x="([\d.]+)"[^>]*text-anchor="end"', svg).group(1))
    assert name_x - len(long_name) * float(CHAR_W) >= 0  # the whole name is inside the chart
    rate_x = float(re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="12"', svg)[0])
    assert rate_x + len("80% (12/15)") * float(CHAR_W) <= 640

    very_long = "A client whose display name is much longer than any chart column could hold"
    svg = str(success_bars([(very_long, 1, 0)], width=640))
    assert f"<title>{very_long}</title>" in svg and "…</text>" in svg
