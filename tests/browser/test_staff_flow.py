"""Staff flow in headless Chromium: log in, watch a paper master event replicate to every child,
make drift by trading a child by hand, see it flagged, correct it, see it clear.

The engine runs in the test (Orchestrator(workers=0).run_tick()); the browser talks to the live
server; both share the test database. Screenshots land in artifacts/browser/.
"""

from __future__ import annotations

from typing import Any

import pytest

from brokers.paper.services import paper_order_place
from lab.demo import CHILDREN, FUT, build_desk
from replication.models import OrderMapping
from replication.orchestrator import Orchestrator
from tests.browser.pages import css, wait
from tests.factories import StaffFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pass-for-tests-only"  # StaffFactory's password


def _log_rows(browser: Any) -> dict[str, str]:
    """child name -> child order status, as the log page shows them now."""
    return {
        row.get_attribute("data-child"): row.get_attribute("data-status")
        for row in css(browser, "tr[data-child]")
    }


def _grade(browser: Any, child: str) -> str | None:
    rows = css(browser, f'tr[data-child="{child}"][data-instrument="{FUT}"]')
    return rows[0].get_attribute("data-grade") if rows else None


def test_staff_flow_replicate_drift_correct(live_server, browser, screenshot):
    desk = build_desk()
    StaffFactory(username="desk-staff")
    orch = Orchestrator(holder="browser-test", workers=0)
    try:
        orch.run_tick()  # the master's baseline margin snapshot

        # 1. Log in as staff through the product's login form.
        browser.get(f"{live_server.url}/staff/")
        wait(browser, lambda b: "/login/" in b.current_url, "the login redirect")
        css(browser, "#id_username")[0].send_keys("desk-staff")
        css(browser, "#id_password")[0].send_keys(PASSWORD)
        css(browser, "input[type=submit]")[0].click()
        # The URL changes before the new page is parsed: wait for the page itself.
        wait(
            browser,
            lambda b: (
                b.current_url.rstrip("/").endswith("/staff")
                and any("Overview" in h.text for h in css(b, "h1"))
            ),
            "the overview after login",
        )
        assert len(css(browser, "#switches .switch")) == 4
        screenshot("01-overview")

        # 2. The log is open when the master trades; it refreshes itself (no page load).
        browser.get(f"{live_server.url}/staff/log/")
        assert "No master events yet" in browser.page_source
        browser.execute_script("window.stillTheSamePage = true;")
        paper_order_place(
            user_id="MASTER",
            exchange="NFO",
            tradingsymbol=FUT,
            side="BUY",
            quantity=150,
            product="NRML",
            order_type="MARKET",
        )
        orch.run_tick()  # allocate, plan and send every child's order
        orch.run_tick()  # follow up: the fills
        wait(
            browser,
            lambda b: set(_log_rows(b)) == set(CHILDREN) and _log_rows(b)["C1"] == "filled",
            "every child's order in the log",
        )
        assert browser.execute_script("return window.stillTheSamePage === true;")
        shown = _log_rows(browser)
        assert shown == {"C1": "filled", "C2": "filled", "C3": "skipped", "C4": "filled", "C5": "filled"}
        placed = dict(
            OrderMapping.objects.filter(quantity__gt=0).values_list("child__broker_user_id", "quantity")
        )
        assert placed == {"C1": 75, "C2": 300, "C4": 75, "C5": 75}
        screenshot("02-log-replicated")

        # 3. C2 closes its position by hand on the paper exchange: reconciliation flags it.
        paper_order_place(
            user_id="C2",
            exchange="NFO",
            tradingsymbol=FUT,
            side="SELL",
            quantity=300,
            product="NRML",
            order_type="MARKET",
        )
        browser.get(f"{live_server.url}/staff/reconcile/")
        assert _grade(browser, "C2") == "major"
        assert {_grade(browser, c) for c in ("C1", "C4", "C5")} == {"ok"}
        screenshot("03-reconcile-drift")

        # 4. The corrective order: the confirmation page shows exactly what will be sent.
        css(browser, f'tr[data-child="C2"][data-instrument="{FUT}"] a.correct')[0].click()
        wait(browser, lambda b: css(b, "#correction #plan-side"), "the correction confirmation page")
        assert css(browser, "#plan-side")[0].text == "BUY"
        assert css(browser, "#plan-quantity")[0].text == "300"
        assert css(browser, "#plan-instrument")[0].text == f"NFO:{FUT}"
        assert css(browser, "#plan-child")[0].text == "C2"
        screenshot("04-correction-confirm")
        css(browser, "#confirm")[0].click()
        wait(browser, lambda b: css(b, ".messages .success"), "the confirmation message")
        assert "Corrective order" in css(browser, ".messages .success")[0].text

        # 5. The engine's next tick sends it; the drift clears.
        result = orch.run_tick()
        assert result.dispatch.sent == 1
        browser.get(f"{live_server.url}/staff/reconcile/")
        assert _grade(browser, "C2") == "ok"
        assert desk.positions(FUT)["C2"] == 300
        screenshot("05-reconcile-cleared")

        # The child and the charts pages after the session, for the record.
        browser.get(f"{live_server.url}/staff/children/{desk.children['C2'].pk}/")
        assert "Positions at the broker" in browser.page_source
        screenshot("06-child-detail")
        browser.get(f"{live_server.url}/staff/charts/")
        assert css(browser, "#success svg.chart") and css(browser, "#latency svg.chart")
        screenshot("07-charts")
    finally:
        orch.close()
