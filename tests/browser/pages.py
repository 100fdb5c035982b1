"""What the browser tests share: waiting for a page, and finding its elements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

WAIT_S = 20  # the staff log polls every 5 s


def wait(browser: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Poll until `condition(browser)` is truthy and return it; fail the test after WAIT_S.

    A click does not wait for the next page: the condition may read the old page's elements
    while it unloads (a stale element is one more reason to poll again) or the new page's before
    it is whole, so the condition counts only once the document is complete.
    """
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    waiting = WebDriverWait(
        browser, WAIT_S, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    )
    try:
        return waiting.until(lambda b: loaded(b) and condition(b))
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what} on {browser.current_url}", pytrace=False)


def loaded(browser: Any) -> bool:
    return browser.execute_script("return document.readyState;") == "complete"


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)
