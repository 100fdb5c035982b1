"""Pre-open check: which broker accounts need their daily login before the market opens.

Every broker whose capabilities say it has a session (`brokers.capabilities`: Kite's daily login
redirect, its token dying at about 06:00 IST; Angel's headless PIN + TOTP login, its token dying at
midnight) is checked the same way; brokers without one (the paper exchange) never are. Scheduled at
08:45 IST (`replication.tasks.SCHEDULES`), the check logs every account that will not have a live
session at 09:15 IST, writes one audit row per account and, when mail is configured (EMAIL_HOST),
emails the staff. `accounts_needing_login` is also dashboard data.

A headless login whose PIN and TOTP secret are stored (Angel One) needs nobody: the check logs in
for it (outside any transaction), stores the day's session and flags the account only when that
login fails. Without them, or when the engine marked it as needing a login, it is flagged as any.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Broker, Ownership
from accounts.services import AccountError
from accounts.services.headless import account_headless_login
from brokers.capabilities import Capabilities, SessionKind, UnknownCapabilities, capabilities_for
from brokers.errors import BrokerError
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
ACTOR = "login-check"
MARKET_OPEN = time(9, 15)
MARKET_CLOSE = time(15, 30)


def _next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def session_deadline(now: datetime) -> datetime:
    """The moment a token must still be alive at: `now` during a weekday session, otherwise the next
    weekday's 09:15 IST open (exchange holidays are not known here: the check is conservative)."""
    local = now.astimezone(IST)
    if local.weekday() < 5 and local.time() < MARKET_CLOSE:
        open_at = datetime.combine(local.date(), MARKET_OPEN, tzinfo=IST)
        return max(open_at, local).astimezone(UTC)
    return datetime.combine(_next_weekday(local.date()), MARKET_OPEN, tzinfo=IST).astimezone(UTC)


def _capabilities(broker: str) -> Capabilities | None:
    try:
        return capabilities_for(broker)
    except UnknownCapabilities:
        return None


def brokers_with_sessions() -> list[str]:
    """The broker kinds whose accounts hold a session token (a kind without a capability record
    is counted in: better a needless reminder than a missed login)."""
    kinds = []
    for kind in Broker.values:
        caps = _capabilities(kind)
        if caps is None or caps.session.needs_token:
            kinds.append(kind)
    return kinds


def login_reason(account: Account, *, deadline: datetime) -> str | None:
    """Why `account` needs a login before `deadline`, or None when its session will still be live."""
    if account.status == AccountStatus.NEEDS_LOGIN:
        return "marked as needing a login"
    if not account.access_token:
        return "no access token"
    if account.token_expires_at is None:
        return "access token of unknown expiry"
    if account.token_expires_at <= deadline:
        expiry = account.token_expires_at.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")
        return f"access token expires {expiry}"
    return None


def server_logs_in(account: Account) -> bool:
    """The server logs in for this account by itself: its broker's login is headless (TOTP) and
    its PIN and TOTP secret are stored."""
    caps = _capabilities(account.broker)
    headless = caps is not None and caps.session.kind is SessionKind.HEADLESS_TOTP
    return headless and bool(account.pin) and bool(account.totp_secret)


def _without_live_session(deadline: datetime) -> list[Account]:
    accounts = (
        Account.objects.filter(broker__in=brokers_with_sessions())
        .exclude(status=AccountStatus.DISABLED)
        .exclude(ownership=Ownership.PENDING)
        .order_by("pk")
    )
    return [account for account in accounts if login_reason(account, deadline=deadline) is not None]


def accounts_needing_login(now: datetime | None = None) -> list[Account]:
    """Enabled accounts (master and children) at every broker with sessions, without a live session
    at the next market open (or now, during a session), that a person must log in: status
    needs_login, or token missing, expired or expiring first, except where the server logs in by
    itself (`server_logs_in`) and the engine has not marked it. Pending claims are left out: a
    login of a client's unproven claim is not staff's to do."""
    deadline = session_deadline(now or timezone.now())
    return [
        account
        for account in _without_live_session(deadline)
        if account.status == AccountStatus.NEEDS_LOGIN or not server_logs_in(account)
    ]


def _server_login(account: Account) -> str | None:
    """Log in for `account` with its stored PIN and TOTP secret; None when the session is stored,
    else why the login failed (the adapter's message, with every secret it knows masked)."""
    try:
        account_headless_login(account=account, actor=ACTOR)
    except BrokerError as exc:
        return f"the server's login failed ({exc.code}): {exc.message}"
    except CredentialDecryptError:
        return "the server's login failed: the stored PIN or TOTP secret cannot be decrypted"
    except AccountError as exc:
        return f"the server's login failed: {exc.message}"
    return None


def _interactive(account: Account) -> bool:
    caps = _capabilities(account.broker)
    return caps is None or caps.session.interactive


def _mail_configured() -> bool:
    return bool(settings.EMAIL_HOST)


def _staff_emails() -> list[str]:
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted({str(email) for email in users.values_list("email", flat=True)})


def _broker_name(broker: str) -> str:
    caps = _capabilities(broker)
    return caps.name if caps is not None else broker


def _login_how(account: Account) -> str:
    """Where the login happens: a page to visit (a login redirect), or the server's own login."""
    caps = _capabilities(account.broker)
    if caps is not None and not caps.session.interactive:
        return "the server logs in with the stored client code, PIN and TOTP: check them"
    base = str(settings.SITE_URL or "").rstrip("/")
    return f"{base}/accounts/{account.pk}/{account.broker}/login/"


def _accounts_word(accounts: list[Account]) -> str:
    """ "Kite" when every account is at one broker, else "broker"."""
    kinds = {account.broker for account in accounts}
    return _broker_name(kinds.pop()) if len(kinds) == 1 else "broker"


def _email(lines: list[str], accounts: list[Account], deadline: datetime) -> bool:
    """Email the staff (or ADMINS when no staff user has an address). Returns True when sent."""
    when = deadline.astimezone(IST).strftime("%a %d %b %H:%M IST")
    count = len(accounts)
    word = _accounts_word(accounts)
    subject = f"{count} {word} account{'s' if count != 1 else ''} need a login before {when}"
    commands = sorted({f"  manage.py {a.broker}_login ACCOUNT_ID" for a in accounts if _interactive(a)})
    body = "\n".join(
        [
            f"These {word} accounts will not have a live session at {when}:",
            "",
            *lines,
            "",
            "Log in from each account's link (staff or the account's owner), or on the server run:",
            *commands,
        ]
    )
    recipients = _staff_emails()
    if recipients:
        send_mail(subject, body, None, recipients)
    elif settings.ADMINS:
        mail_admins(subject, body)
    else:
        logger.warning("login check: mail is configured but no staff user has an email address")
        return False
    return True


def login_check_task(now: datetime | None = None) -> str:
    """Log in where the server can (a headless login with its PIN and TOTP secret stored); log,
    audit and (when mail is configured) email the accounts that still need a login. A summary line."""
    now = now or timezone.now()
    deadline = session_deadline(now)
    needing: list[tuple[Account, str | None]] = []
    logged_in = 0
    for account in _without_live_session(deadline):  # broker calls: outside any transaction
        reason = login_reason(account, deadline=deadline)
        if server_logs_in(account):
            failure = _server_login(account)
            if failure is None:
                logged_in += 1
                logger.info("login check: logged in for account %s (%s)", account.pk, account.broker_user_id)
                continue
            reason = f"{reason}; {failure}"
        needing.append((account, reason))
    done = f"{logged_in} account(s) logged in by the server; " if logged_in else ""
    if not needing:
        return f"{done}every broker account has a live session for the next market open"
    lines = []
    with transaction.atomic():
        for account, reason in needing:
            name = _broker_name(account.broker)
            who = f"account {account.pk} {account.broker_user_id} ({name}, {account.role}, {account.status})"
            lines.append(f"- {who}: {reason}\n  {_login_how(account)}")
            logger.warning(
                "%s account %s (%s) needs a login: %s", name, account.pk, account.broker_user_id, reason
            )
            audit(
                kind=EventKind.ACCOUNT_LOGIN_NEEDED,
                actor="login-check",
                account=account,
                message=f"needs a {name} login before {deadline.astimezone(IST):%Y-%m-%d %H:%M} IST: "
                f"{reason}",
                data={"reason": reason, "deadline": deadline.isoformat()},
            )
    note = ""
    if _mail_configured():
        try:
            sent = _email(lines, [account for account, _ in needing], deadline)
            note = " (staff emailed)" if sent else " (nobody to email)"
        except (smtplib.SMTPException, OSError) as exc:
            logger.error("login check: the email to staff failed: %s", exc)
            note = " (email failed)"
    word = _accounts_word([account for account, _ in needing])
    return f"{len(needing)} {word} account(s) need a login{note}" + (f"; {done.rstrip('; ')}" if done else "")
