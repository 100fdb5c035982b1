"""Client flow in headless Chromium: a client signs in at the product's login page, lands on the
portal, opens an account with today's copy trade, pauses and resumes it, tightens a limit (and is
refused when loosening it), tries another client's account URL (404), and looks at the account
page on a phone-sized screen.

The engine runs in the test (Orchestrator(workers=0).run_tick()); the browser talks to the live
server; both share the test database. Screenshots land in artifacts/browser/client-*.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Account, AccountStatus
from lab.demo import FUT, build_desk
from replication.models import ReplicationEvent
from replication.orchestrator import Orchestrator
from tests.browser.pages import css, wait
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pass-for-tests-only"  # UserFactory's password
PHONE = (390, 844)


def _status(browser: Any) -> str:
    return css(browser, "#status")[0].get_attribute("data-status")


def _message(browser: Any, word: str) -> str:
    """The page's messages once one of them says `word`. A click that posts a form leaves the old
    page (and its message from the step before) in view until the new one loads: its elements go
    stale while being read, so they are read again rather than trusted."""
    from selenium.common.exceptions import StaleElementReferenceException

    def shown(b: Any) -> str | bool:
        try:
            text = " ".join(m.text for m in css(b, ".messages li"))
        except StaleElementReferenceException:
            return False
        return text if word in text else False

    return str(wait(browser, shown, f"a message saying {word!r}"))


def test_client_portal_walk(live_server, browser, screenshot):
    desk = build_desk()
    carol, bob = UserFactory(username="carol"), UserFactory(username="bob")
    mine, theirs = desk.children["C2"], desk.children["C1"]
    Account.objects.filter(pk__in=[mine.pk, desk.children["C3"].pk]).update(owner=carol)
    Account.objects.filter(pk=theirs.pk).update(owner=bob)
    orch = Orchestrator(holder="browser-client-test", workers=0)
    try:
        orch.run_tick()  # the master's baseline margin snapshot
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.run_tick()

        # 1. `/` sends an anonymous visitor to the login page; the client lands on the portal.
        browser.get(f"{live_server.url}/")
        wait(browser, lambda b: "/login/" in b.current_url, "the login page")
        css(browser, "#id_username")[0].send_keys("carol")
        css(browser, "#id_password")[0].send_keys(PASSWORD)
        css(browser, "#sign-in")[0].click()
        # The URL changes before the new page is parsed: wait for the page itself.
        cards = wait(
            browser,
            lambda b: b.current_url.endswith("/my/") and css(b, "section[data-account]"),
            "the portal after login",
        )
        assert {c.get_attribute("data-account") for c in cards} == {
            str(mine.pk),
            str(desk.children["C3"].pk),
        }
        assert "C1" not in css(browser, "main")[0].text
        screenshot("client-01-home")

        # 2. The account: today's copy trade, filled, with the master's event beside it.
        css(browser, f"#account-{mine.pk} h2 a")[0].click()
        wait(browser, lambda b: css(b, "#trades"), "the account page")
        rows = css(browser, "#trades tr[data-trade]")
        assert [r.get_attribute("data-status") for r in rows] == ["filled"]
        assert "BUY 300" in rows[0].text and f"BUY 150 NFO:{FUT}" in rows[0].text
        position = css(browser, f'#positions tr[data-instrument="NFO:{FUT}"]')[0]
        assert (position.get_attribute("data-entitled"), position.get_attribute("data-held")) == (
            "300",
            "300",
        )
        assert _status(browser) == "active"
        screenshot("client-02-account")

        # 3. Pause, then resume.
        css(browser, "#pause")[0].click()
        _message(browser, "Paused")
        assert _status(browser) == "paused"
        screenshot("client-03-paused")
        css(browser, "#resume")[0].click()
        _message(browser, "Resumed")
        assert _status(browser) == "active"

        # 4. Tighten a limit; loosening it again is refused with a clear message.
        field = css(browser, "#id_max_lots_per_order")[0]
        field.clear()
        field.send_keys("2")
        css(browser, "#save-limits")[0].click()
        _message(browser, "tighter")
        assert css(browser, "#id_max_lots_per_order")[0].get_attribute("value") == "2"
        field = css(browser, "#id_max_lots_per_order")[0]
        field.clear()
        field.send_keys("5")
        css(browser, "#save-limits")[0].click()
        error = wait(browser, lambda b: css(b, "#limits .errorlist li"), "the refusal")[0].text
        assert "can only be lowered" in error and "(it is 2 now)" in error
        screenshot("client-04-limit-refused")
        mine.refresh_from_db()
        assert mine.max_lots_per_order == 2 and mine.status == AccountStatus.ACTIVE
        assert set(
            ReplicationEvent.objects.filter(account=mine, actor="carol").values_list("kind", flat=True)
        ) == {"account.status_changed", "account.settings_updated"}

        # 5. Another client's account: 404, nothing of it shown.
        browser.get(f"{live_server.url}/my/accounts/{theirs.pk}/")
        assert "Not Found" in browser.page_source
        assert "C1" not in browser.page_source
        screenshot("client-05-other-clients-account-404")

        # 6. The same account page on a phone-sized screen: nothing wider than the screen.
        browser.set_window_size(*PHONE)
        browser.get(f"{live_server.url}/my/accounts/{mine.pk}/")
        wait(browser, lambda b: css(b, "#trades"), "the account page")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        screenshot("client-06-account-phone")
    finally:
        orch.close()
