"""`manage.py link_account`: parseable output, one-line errors, nothing written on bad input."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account, CapitalMode, Role
from brokers.paper.models import PaperAccount
from replication.models import ReplicationEvent
from tests.factories import MasterAccountFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("CH1", "CH2", "M1")


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


SECRET = "kitesecretvalue31337"


def _run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("link_account", *args, stdout=out)
    return out.getvalue().splitlines()


def _counts() -> tuple[int, int]:
    return Account.objects.count(), ReplicationEvent.objects.count()


def test_link_account_creates_then_updates_with_parseable_id():
    lines = _run("--broker", "paper", "--user-id", "CH1", "--name", "Client one", "--consent")
    match = re.fullmatch(r"account_id=(\d+) created", lines[0])
    assert match
    account = Account.objects.get(pk=int(match.group(1)))
    assert (account.broker_user_id, account.display_name, account.has_consent) == ("CH1", "Client one", True)
    assert lines[1] == f"linked account {account.pk} (paper:CH1, child)"

    again = _run(
        "--broker", "paper", "--user-id", "CH1", "--multiplier", "1.5", "--capital-mode", "available"
    )

    assert again[0] == f"account_id={account.pk} updated"
    account.refresh_from_db()
    assert (account.multiplier, account.capital_mode) == (Decimal("1.5"), CapitalMode.AVAILABLE)
    assert Account.objects.count() == 1
    assert set(ReplicationEvent.objects.values_list("actor", flat=True)) == {"cli"}


def test_link_account_master_and_fixed_capital():
    lines = _run(
        "--broker",
        "paper",
        "--user-id",
        "M1",
        "--master",
        "--capital-mode",
        "fixed",
        "--fixed-capital",
        "1000000",
    )

    account = Account.objects.get(broker_user_id="M1")
    assert lines[0] == f"account_id={account.pk} created"
    assert account.role == Role.MASTER
    assert str(account.fixed_capital) == "1000000.00"


def test_link_account_kite_never_prints_secrets():
    lines = _run("--broker", "kite", "--user-id", "zk01", "--api-key", "kiteapikey9", "--api-secret", SECRET)

    output = "\n".join(lines)
    account = Account.objects.get(broker="kite")
    assert account.broker_user_id == "ZK01"
    assert account.secret("api_secret") == SECRET
    assert SECRET not in output
    assert "kiteapikey9" not in output
    assert "log in" in lines[-1]


def test_link_account_reads_a_dash_credential_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))

    _run("--broker", "kite", "--user-id", "ZK02", "--api-key", "kiteapikey9", "--api-secret", "-")

    assert Account.objects.get(broker_user_id="ZK02").secret("api_secret") == SECRET


BAD_ARGS = [
    (["--broker", "paper", "--user-id", "CH2", "--multiplier", "abc"], "--multiplier"),
    (["--broker", "paper", "--user-id", "CH2", "--multiplier", "-1"], "multiplier"),
    (["--broker", "paper", "--user-id", "CH2", "--multiplier", "NaN"], "--multiplier"),
    (["--broker", "paper", "--user-id", "CH2", "--multiplier", "1e999999"], "multiplier"),
    (["--broker", "paper", "--user-id", "CH2", "--fixed-capital", "abc"], "--fixed-capital"),
    (["--broker", "paper", "--user-id", "CH2", "--fixed-capital", "1000"], "capital mode 'fixed'"),
    (["--broker", "paper", "--user-id", "CH2", "--capital-mode", "fixed"], "fixed capital"),
    (
        ["--broker", "paper", "--user-id", "CH2", "--capital-mode", "fixed", "--fixed-capital", "-1"],
        "fixed_capital",
    ),
    (["--broker", "paper", "--user-id", "bad id!"], "user id"),
    (["--broker", "paper", "--user-id", "x" * 65], "user id"),
    (["--broker", "paper", "--user-id", "CH2", "--name", "a\nb"], "control characters"),
    (["--broker", "paper", "--user-id", "CH2", "--api-key", "kiteapikey9"], "no credentials"),
    (["--broker", "kite", "--user-id", "ZK03"], "api key"),
    (["--broker", "kite", "--user-id", "ZK03", "--api-key", "bad key", "--api-secret", SECRET], "api_key"),
    (["--broker", "paper", "--user-id", "CH2", "--master"], "promote"),
    (["--broker", "zerodha", "--user-id", "CH2"], "invalid choice"),
    (["--broker", "paper", "--user-id", "CH2", "--capital-mode", "all"], "invalid choice"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_ARGS)
def test_link_account_bad_input_is_one_line_and_changes_nothing(args, fragment):
    MasterAccountFactory()
    before = _counts()

    with pytest.raises(CommandError) as excinfo:
        _run(*args)

    message = str(excinfo.value)
    assert fragment in message
    assert "\n" not in message
    assert SECRET not in message
    assert _counts() == before


def test_link_account_audit_rows_never_hold_the_secret():
    _run("--broker", "kite", "--user-id", "ZK04", "--api-key", "kiteapikey9", "--api-secret", SECRET)

    text = " ".join(json.dumps(e.data) + e.message for e in ReplicationEvent.objects.all())
    assert SECRET not in text
    assert "kiteapikey9" not in text


def test_link_account_angel_needs_pin_and_totp_or_a_token_and_stores_nothing_without():
    before = _counts()
    with pytest.raises(CommandError, match="PIN and TOTP secret") as caught:
        _run("--broker", "angel", "--user-id", "a55", "--api-key", "angelkey01")
    assert "\n" not in str(caught.value)
    assert _counts() == before


def test_link_account_angel_with_a_token_upper_cases_the_client_code(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJBNTUifQ.c2ln\n"))
    lines = _run("--broker", "angel", "--user-id", "a55", "--api-key", "angelkey01", "--access-token", "-")

    account = Account.objects.get(broker="angel")
    assert account.broker_user_id == "A55" and account.secret("access_token").startswith("eyJ")
    assert lines[1] == f"linked account {account.pk} (angel:A55, child)"
    assert "logged in" not in "\n".join(lines)  # a token given, no login made
    assert "next: store the PIN and TOTP secret" in lines[-1]


def test_link_account_pin_is_refused_for_kite_by_the_service():
    before = _counts()
    with pytest.raises(CommandError, match="for Angel One and Dhan accounts only"):
        _run(
            "--broker",
            "kite",
            "--user-id",
            "ZK9",
            "--api-key",
            "kiteapikey9",
            "--api-secret",
            "kitesecret9",
            "--totp-secret",
            "JBSWY3DPEHPK3PXP",
        )
    assert _counts() == before
