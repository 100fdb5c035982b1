"""The two channels: email (Django's mail, SMTP settings from the environment) and Telegram (the
Bot API's sendMessage under TELEGRAM_API_ROOT). Each raises `ChannelError` and never logs or
returns the bot token."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from replication.alerts.models import Channel


class ChannelError(Exception):
    """A message was not delivered. `permanent`: trying again will not help (bad address, no token)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(redact(message))
        self.permanent = permanent


def redact(text: str) -> str:
    """The text with the bot token (which is in the Bot API's URL) replaced by ***."""
    token = settings.TELEGRAM_BOT_TOKEN
    return text.replace(token, "***") if token else text


def email_send(*, to: str, subject: str, body: str) -> None:
    if not to:
        raise ChannelError("no email address", permanent=True)
    connection = get_connection(timeout=settings.ALERT_CHANNEL_TIMEOUT_SECONDS)
    message = EmailMessage(subject, body, settings.ALERT_EMAIL_FROM, [to], connection=connection)
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelError(f"email refused: {exc}", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"email failed: {type(exc).__name__}: {exc}") from None


def telegram_send(*, chat_id: str, text: str) -> None:
    token = settings.TELEGRAM_BOT_TOKEN
    if not token:
        raise ChannelError("TELEGRAM_BOT_TOKEN is not set", permanent=True)
    if not chat_id:
        raise ChannelError("no Telegram chat id", permanent=True)
    root = settings.TELEGRAM_API_ROOT.rstrip("/")
    if not root.startswith(("https://", "http://")):
        raise ChannelError(f"TELEGRAM_API_ROOT must be an http(s) URL, not {root!r}", permanent=True)
    url = f"{root}/bot{token}/sendMessage"
    payload = json.dumps({"chat_id": chat_id, "text": text[:4096]}).encode()
    headers = {"Content-Type": "application/json"}
    # The scheme is checked above (http or https only), which is what S310 warns about.
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")  # noqa: S310
    timeout = settings.ALERT_CHANNEL_TIMEOUT_SECONDS
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        # 4xx other than 429 (chat not found, bot blocked, bad token): trying again will not help.
        permanent = 400 <= exc.code < 500 and exc.code != 429
        raise ChannelError(f"telegram answered HTTP {exc.code}", permanent=permanent) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChannelError(f"telegram unreachable: {type(exc).__name__}: {reason}") from None
    if not answer.get("ok"):
        raise ChannelError(f"telegram refused the message: {answer.get('description', '')[:200]}")


def channel_send(*, channel: str, address: str, subject: str, body: str) -> None:
    """Send one message on `channel`; raises ChannelError."""
    if channel == Channel.EMAIL:
        email_send(to=address, subject=subject, body=body)
    elif channel == Channel.TELEGRAM:
        telegram_send(chat_id=address, text=f"{subject}\n\n{body}")
    else:
        raise ChannelError(f"unknown channel {channel!r}", permanent=True)
