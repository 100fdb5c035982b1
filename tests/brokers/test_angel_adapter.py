"""The Angel adapter's own rules: its order budget, its timeouts, its session lifetime, and the
SDK made safe to import and construct."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
import requests

from brokers.angel.budget import ORDER_WRITES, Pacer, WriteBudget
from brokers.angel.errors import translate
from brokers.angel.sdk import SDK_ERRORS, connection, smart_exceptions
from brokers.angel.session import bare_jwt, session_expiry, totp_at, totp_code
from brokers.errors import BrokerError, BrokerUnavailable, OutcomeUnknown, RateLimited


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_angel_budget_hourly_limit_holds_under_a_burst():
    clock = FakeClock()
    budget = WriteBudget(clock=clock, sleep=clock.sleep)
    sent, refused = 0, []
    while clock.now < 3500:  # a burst: every write as soon as the budget lets it, for an hour
        try:
            budget.take()
            sent += 1
        except RateLimited as error:
            refused.append(error)
            clock.now += 5  # the engine tries again in a later tick
        clock.now += 0.01

    assert sent == 1000
    assert refused and all(e.code == "budget_spent" and not e.permanent for e in refused)
    assert budget.used(3600) == 1000
    clock.now += 3600
    budget.take()  # an hour later the window has moved on


def test_angel_budget_waits_out_the_second_and_refuses_a_full_minute():
    clock = FakeClock()
    budget = WriteBudget(clock=clock, sleep=clock.sleep)
    for _ in range(9):
        budget.take()
    budget.take()  # the tenth in the same second waits for the window
    assert 0 < clock.slept <= 1.0
    assert budget.used(1.0) <= 9
    assert [w.limit for w in ORDER_WRITES] == [9, 500, 1000]


def test_angel_pacer_spaces_book_reads_a_second_apart():
    clock = FakeClock()
    pacer = Pacer(1, clock=clock, sleep=clock.sleep)
    pacer.take()
    pacer.take()
    assert clock.slept >= 1.0


@pytest.mark.parametrize(
    ("exc", "write", "kind"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), True, OutcomeUnknown),
        (requests.exceptions.ReadTimeout("read timed out"), False, BrokerUnavailable),
        (requests.exceptions.ConnectTimeout("connect timed out"), True, BrokerUnavailable),
        (requests.exceptions.ChunkedEncodingError("reset"), True, OutcomeUnknown),
        (
            smart_exceptions.DataException(
                "Couldn't parse: b'Access denied because of exceeding access rate'"
            ),
            True,
            RateLimited,
        ),
        (smart_exceptions.DataException("Couldn't parse: b'<html>502</html>'"), True, OutcomeUnknown),
        (KeyError("status"), True, OutcomeUnknown),
    ],
)
def test_angel_errors_a_write_without_an_answer_is_unknown_never_refused(exc, write, kind):
    error = translate(exc, write=write, sdk_errors=SDK_ERRORS)
    assert type(error) is kind


def test_angel_errors_hide_secrets():
    error = translate(
        requests.exceptions.ReadTimeout("token abcd1234secret"),
        write=True,
        sdk_errors=SDK_ERRORS,
        secrets=["abcd1234secret"],
    )
    assert "abcd1234secret" not in error.message


def test_angel_session_lives_until_midnight_ist():
    assert session_expiry(datetime(2026, 12, 3, 3, 0, tzinfo=UTC)) == datetime(
        2026, 12, 3, 18, 30, tzinfo=UTC
    )
    assert session_expiry(datetime(2026, 12, 3, 19, 0, tzinfo=UTC)) == datetime(
        2026, 12, 4, 18, 30, tzinfo=UTC
    )
    assert bare_jwt("Bearer eyJ.abc") == "eyJ.abc"


def test_angel_totp_matches_rfc_6238_and_takes_short_secrets():
    secret = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 appendix B, SHA-1
    assert totp_at(secret, datetime.fromtimestamp(59, tz=UTC)) == "287082"  # 94287082, 6 digits
    assert totp_at(secret, datetime.fromtimestamp(1111111109, tz=UTC)) == "081804"
    assert len(totp_code("JBSWY3DPEHPK3PXP", datetime(2026, 12, 3, tzinfo=UTC))) == 6  # 80 bits


def test_angel_totp_of_a_bad_secret_is_a_broker_error_not_a_crash():
    with pytest.raises(BrokerError) as bad:
        totp_code("not base32 !!", datetime(2026, 12, 3, tzinfo=UTC))
    assert bad.value.code == "totp_secret_invalid"


def test_angel_sdk_connection_writes_no_log_folder_and_keeps_requests_get(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        conn = connection(api_key="k", root="http://127.0.0.1:9", timeout=1.0)
    finally:
        os.chdir(cwd)
    assert list(tmp_path.iterdir()) == []
    assert (conn.root, conn.timeout, conn.privateKey) == ("http://127.0.0.1:9", 1.0, "k")
    assert requests.get.__module__ == "requests.api"  # the import's stand-in was put back
