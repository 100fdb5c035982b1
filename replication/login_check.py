"""Pre-open check: which broker accounts need their daily login before the market opens.

Every broker whose capabilities say it has a session (`brokers.capabilities`: Kite's daily login
redirect, its token dying at about 06:00 IST; Angel's headless PIN + TOTP login, its token dying at
midnight) is checked the same way; brokers without one (the paper exchange) never are. Scheduled at
08:45 IST (`replication.tasks.SCHEDULES`), the check logs every account that will not have a live
session at 09:15 IST, writes one audit row per account and, when mail is configured (EMAIL_HOST),
emails the staff. `accounts_needing_login` is also dashboard data.
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

from accounts.models import Account, AccountStatus, Broker, Ownership
from brokers.capabilities import Capabilities, UnknownCapabilities, capabilities_for
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
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


def accounts_needing_login(now: datetime | None = None) -> list[Account]:
    """Enabled accounts (master and children) at every broker with sessions, without a live session
    at the next market open (or now, during a session): status needs_login, or token missing,
    expired or expiring first. Pending claims are left out: a login of a client's unproven claim is
    not staff's to do."""
    deadline = session_deadline(now or timezone.now())
    accounts = (
        Account.objects.filter(broker__in=brokers_with_sessions())
        .exclude(status=AccountStatus.DISABLED)
        .exclude(ownership=Ownership.PENDING)
        .order_by("pk")
    )
    return [account for account in accounts if login_reason(account, deadline=deadline) is not None]


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
    """Log, audit and (when mail is configured) email the accounts that need a login. A summary line."""
    now = now or timezone.now()
    deadline = session_deadline(now)
    needing = [(a, login_reason(a, deadline=deadline)) for a in accounts_needing_login(now)]
    if not needing:
        return "every broker account has a live session for the next market open"
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
    return f"{len(needing)} {word} account(s) need a login{note}"
