"""Input checks for account services: one cleaner per kind of value, errors collected per field.

Every cleaner takes untrusted input (any type: CLI strings, API payloads, admin forms) and returns the
normalised value or raises :class:`AccountError` for that field. Messages never echo a credential.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from accounts.models import MARKET_AFTER_SECONDS_MAX, AccountStatus, Broker, CapitalMode, PendingPolicy

T = TypeVar("T")

USER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
KITE_API_KEY_RE = re.compile(r"[A-Za-z0-9]{6,64}")
KITE_API_SECRET_RE = re.compile(r"[A-Za-z0-9]{6,128}")
# Angel One's session token is a JWT of several hundred characters (Kite's is 32).
ACCESS_TOKEN_RE = re.compile(r"[A-Za-z0-9_.\-]{6,4096}")
PIN_RE = re.compile(r"[0-9]{4,8}")
# A TOTP secret as authenticator apps show it: base32 (A-Z, 2-7), 80 bits (16 characters) or more.
TOTP_SECRET_RE = re.compile(r"[A-Z2-7]{16,128}")
WHOLE_NUMBER_RE = re.compile(r"[+-]?[0-9]{1,12}")
# An allowed/blocked instrument filter entry: one contract ("NFO:NIFTY25DECFUT") or an underlying,
# on one exchange ("NFO:NIFTY") or any ("NIFTY"): `brokers.instruments.matches_filter`'s rule.
INSTRUMENT_RE = re.compile(r"(?:[A-Z]{2,8}:)?[A-Z0-9][A-Z0-9&_.\-]{0,63}")
PRODUCTS = ("NRML", "MIS", "CNC", "MTF")

MAX_NAME = 120
MAX_MULTIPLIER = Decimal("100")
MAX_MONEY = Decimal("10") ** 13
MAX_INT = 2_147_483_647  # PositiveIntegerField on every supported database
MAX_LIST = 5_000
MAX_NUMBER_TEXT = 40
MAX_REASON = 500
MAX_CONSENT_VERSION = 32
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


class AccountError(ValueError):
    """A refused account change. `fields` maps input names to what is wrong with each."""

    def __init__(self, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields: dict[str, str] = dict(fields or {})

    def __repr__(self) -> str:
        return f"AccountError(code={self.code!r}, message={self.message!r}, fields={self.fields!r})"


def _field_error(code: str, field: str, message: str) -> AccountError:
    return AccountError(code, message, {field: message})


class Errors:
    """Collects field errors so one call reports everything that is wrong, then raises once."""

    def __init__(self) -> None:
        self._items: list[AccountError] = []

    def run(self, field: str, clean: Callable[[Any], T], value: Any) -> T | None:
        """Clean `value` (None means "not given" and passes through untouched)."""
        if value is None:
            return None
        try:
            return clean(value)
        except AccountError as exc:
            self._items.append(exc if exc.fields else _field_error(exc.code, field, exc.message))
            return None

    def add(self, code: str, field: str, message: str) -> None:
        self._items.append(_field_error(code, field, message))

    def raise_if_any(self) -> None:
        if not self._items:
            return
        fields: dict[str, str] = {}
        for item in self._items:
            for name, text in item.fields.items():
                fields.setdefault(name, text)
        message = "; ".join(dict.fromkeys(item.message for item in self._items))
        raise AccountError(self._items[0].code, message, fields)


def show(value: Any) -> str:
    """A short, single-line rendering of untrusted input for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Characters that make text on a page or in the audit trail read as something else: control
# characters (line feed, carriage return, tab, NUL ...), format characters (right-to-left overrides
# and isolates, zero-width spaces and joiners, the byte-order mark), line and paragraph separators,
# surrogates and private-use characters.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in HIDDEN_CATEGORIES for ch in text)


def clean_plain_text(value: Any, *, field: str, code: str, max_length: int) -> str:
    """Free text people read on one line (a display name, a reason), stripped.

    Refused: not text, longer than `max_length`, or holding a line break, a tab, a direction
    override or an invisible character (a second, made-up audit line or a reversed word).
    """
    if not isinstance(value, str):
        raise _field_error(code, field, f"{field} must be text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > max_length:
        raise _field_error(code, field, f"{field} is longer than {max_length} characters")
    if _has_control_chars(text):
        raise _field_error(
            code,
            field,
            f"{field} contains control characters (line breaks, tabs, direction overrides or "
            "invisible characters); write it as plain text on one line",
        )
    return text


def clean_broker(value: Any) -> str:
    if not isinstance(value, str) or value not in Broker.values:
        raise _field_error(
            "unknown_broker",
            "broker",
            f"unknown broker {show(value)}; expected one of {', '.join(Broker.values)}",
        )
    return value


def clean_user_id(value: Any, *, broker: str | None = None) -> str:
    if not isinstance(value, str):
        raise _field_error("invalid_user_id", "user_id", f"user id must be text, got {type(value).__name__}")
    text = value.strip()
    if not USER_ID_RE.fullmatch(text):
        raise _field_error(
            "invalid_user_id",
            "user_id",
            "user id must be 1-64 characters of letters, digits, '_' or '-'",
        )
    # Zerodha client ids, Angel One client codes and Alice Blue user ids are upper case (Dhan's are
    # digits); normalising prevents linking one real account twice.
    return text.upper() if broker in (Broker.KITE, Broker.ANGEL, Broker.DHAN, Broker.ALICE) else text


def clean_name(value: Any) -> str:
    return clean_plain_text(value, field="name", code="invalid_name", max_length=MAX_NAME)


def _clean_credential(value: Any, *, field: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str):
        raise _field_error("invalid_credentials", field, f"{field} must be text, got {type(value).__name__}")
    text = value.strip()
    if not pattern.fullmatch(text):
        raise _field_error("invalid_credentials", field, f"{field} is ill-formed ({rule})")
    return text


def clean_api_key(value: Any) -> str:
    return _clean_credential(value, field="api_key", pattern=KITE_API_KEY_RE, rule="6-64 letters or digits")


def clean_api_secret(value: Any) -> str:
    return _clean_credential(
        value, field="api_secret", pattern=KITE_API_SECRET_RE, rule="6-128 letters or digits"
    )


def clean_access_token(value: Any) -> str:
    return _clean_credential(
        value, field="access_token", pattern=ACCESS_TOKEN_RE, rule="6-4096 letters, digits, '.', '_' or '-'"
    )


def clean_pin(value: Any) -> str:
    """A broker login PIN (Angel One's: 4 to 8 digits). The message never echoes it."""
    if not isinstance(value, str):
        raise _field_error("invalid_credentials", "pin", f"pin must be text, got {type(value).__name__}")
    text = value.strip()
    if not PIN_RE.fullmatch(text):
        raise _field_error(
            "invalid_credentials", "pin", "pin is ill-formed: Angel One's PIN is 4 to 8 digits"
        )
    return text


def clean_totp_secret(value: Any) -> str:
    """A TOTP secret (base32, as an authenticator app shows it: spaces, hyphens, lower case and `=`
    padding allowed), normalised to upper-case base32 without them. The message never echoes it."""
    field = "totp_secret"
    if not isinstance(value, str):
        raise _field_error("invalid_credentials", field, f"{field} must be text, got {type(value).__name__}")
    text = value.replace(" ", "").replace("-", "").strip().upper().rstrip("=")
    try:
        decodable = bool(text) and bool(base64.b32decode(text + "=" * (-len(text) % 8)))
    except (ValueError, binascii.Error):
        decodable = False
    if not (TOTP_SECRET_RE.fullmatch(text) and decodable):
        raise _field_error(
            "invalid_credentials",
            field,
            f"{field} is ill-formed: not a base32 secret (letters A-Z and digits 2-7, 16 or more)",
        )
    return text


CAPITAL_MODES = tuple(mode.value for mode in CapitalMode)


def clean_capital_mode(value: Any) -> str:
    if not isinstance(value, str) or value not in CAPITAL_MODES:
        raise _field_error(
            "invalid_capital_mode",
            "capital_mode",
            f"capital mode {show(value)} is not one of {', '.join(CAPITAL_MODES)}",
        )
    return value


def clean_pending_policy(value: Any) -> str:
    if not isinstance(value, str) or value not in PendingPolicy.values:
        raise _field_error(
            "invalid_pending_policy",
            "pending_policy",
            f"pending policy {show(value)} is not one of {', '.join(PendingPolicy.values)}",
        )
    return value


def clean_market_after_seconds(value: Any) -> int:
    """Whole seconds, 0..MARKET_AFTER_SECONDS_MAX: an int, an integral float or Decimal, or digits."""
    field = "market_after_seconds"
    rule = f"{field} must be a whole number of seconds from 0 to {MARKET_AFTER_SECONDS_MAX}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise _field_error("invalid_seconds", field, rule)
    if isinstance(value, float):
        if not value.is_integer():
            raise _field_error("invalid_seconds", field, rule)
        number = Decimal(int(value))
    elif isinstance(value, str):
        text = value.strip()
        if not WHOLE_NUMBER_RE.fullmatch(text):
            raise _field_error("invalid_seconds", field, rule)
        number = Decimal(text)
    else:
        number = Decimal(value)
    if not number.is_finite() or number != number.to_integral_value():
        raise _field_error("invalid_seconds", field, rule)
    if not 0 <= number <= MARKET_AFTER_SECONDS_MAX:
        raise _field_error("invalid_seconds", field, rule)
    return int(number)


def clean_status(value: Any) -> str:
    if not isinstance(value, str) or value not in AccountStatus.values:
        raise _field_error(
            "invalid_status",
            "status",
            f"status {show(value)} is not one of {', '.join(AccountStatus.values)}",
        )
    return value


def to_decimal(value: Any, *, field: str) -> Decimal:
    """Decimal from a Decimal, an int or a decimal string. Floats and booleans are refused."""
    if isinstance(value, (bool, float)):
        raise _field_error(
            "invalid_number", field, f"{field} must be a decimal number (a string or Decimal, not a float)"
        )
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > MAX_NUMBER_TEXT:
            raise _field_error("invalid_number", field, f"{field} must be a number, got {show(value)}")
        try:
            number = Decimal(text)
        except InvalidOperation as exc:
            raise _field_error(
                "invalid_number", field, f"{field} must be a number, got {show(value)}"
            ) from exc
    else:
        raise _field_error("invalid_number", field, f"{field} must be a number, got {type(value).__name__}")
    if not number.is_finite():
        raise _field_error("invalid_number", field, f"{field} must be a finite number")
    return number


def _check_places(number: Decimal, *, field: str, places: int) -> Decimal:
    step = Decimal(1).scaleb(-places)
    rounded = number.quantize(step)
    if rounded != number:
        raise _field_error("invalid_number", field, f"{field} allows at most {places} decimal places")
    return rounded


def clean_multiplier(value: Any) -> Decimal:
    number = to_decimal(value, field="multiplier")
    if not Decimal("0") < number <= MAX_MULTIPLIER:
        raise _field_error(
            "invalid_number", "multiplier", f"multiplier must be above 0 and at most {MAX_MULTIPLIER}"
        )
    return _check_places(number, field="multiplier", places=4)


def money_cleaner(field: str) -> Callable[[Any], Decimal]:
    """A cleaner for a positive rupee amount, at most 10^13, in paise."""

    def clean(value: Any) -> Decimal:
        number = to_decimal(value, field=field)
        if not Decimal("0") < number <= MAX_MONEY:
            raise _field_error("invalid_number", field, f"{field} must be above 0 and at most 10^13")
        return _check_places(number, field=field, places=2)

    return clean


def count_cleaner(field: str) -> Callable[[Any], int]:
    """A cleaner for a positive whole number (quantities, lots, counts)."""

    def clean(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
            raise _field_error("invalid_number", field, f"{field} must be a whole number")
        number = to_decimal(value, field=field)
        if number != number.to_integral_value():
            raise _field_error("invalid_number", field, f"{field} must be a whole number")
        if not 0 < number <= MAX_INT:
            raise _field_error("invalid_number", field, f"{field} must be between 1 and {MAX_INT}")
        return int(number)

    return clean


def flag_cleaner(field: str) -> Callable[[Any], bool]:
    def clean(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _field_error("invalid_flag", field, f"{field} must be true or false")
        return value

    return clean


def _as_list(value: Any, *, field: str, code: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _field_error(code, field, f"{field} must be a list")
    if len(value) > MAX_LIST:
        raise _field_error(code, field, f"{field} has more than {MAX_LIST} entries")
    return list(value)


def instruments_cleaner(field: str) -> Callable[[Any], list[str]]:
    """A cleaner for a list of filter entries, "EXCHANGE:SYMBOL" (one contract), "EXCHANGE:UNDERLYING"
    or "UNDERLYING" (every contract on it) (upper-cased, duplicates dropped)."""

    def clean(value: Any) -> list[str]:
        items = _as_list(value, field=field, code="invalid_instruments")
        cleaned: dict[str, None] = {}
        for item in items:
            text = item.strip().upper() if isinstance(item, str) else None
            if text is None or not INSTRUMENT_RE.fullmatch(text):
                raise _field_error(
                    "invalid_instruments",
                    field,
                    f"{field}: {show(item)} is not EXCHANGE:SYMBOL, EXCHANGE:UNDERLYING or UNDERLYING",
                )
            cleaned[text] = None
        return list(cleaned)

    return clean


def clean_products(value: Any) -> list[str]:
    items = _as_list(value, field="allowed_products", code="invalid_products")
    cleaned: dict[str, None] = {}
    for item in items:
        text = item.strip().upper() if isinstance(item, str) else None
        if text not in PRODUCTS:
            raise _field_error(
                "invalid_products",
                "allowed_products",
                f"allowed_products: {show(item)} is not one of {', '.join(PRODUCTS)}",
            )
        cleaned[text] = None
    return list(cleaned)


def clean_proxy_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _field_error("invalid_proxy_url", "proxy_url", "proxy_url must be text")
    text = value.strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if len(text) > 255 or parts.scheme not in PROXY_SCHEMES or not parts.hostname or _has_control_chars(text):
        raise _field_error(
            "invalid_proxy_url",
            "proxy_url",
            f"proxy_url must be a URL like http://host:port (schemes: {', '.join(PROXY_SCHEMES)})",
        )
    return text


REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for audit rows, the API and the admin form."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{REDACTED}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def unredact_url(submitted: str, *, stored: str) -> str:
    """A URL sent back from a form that showed `redact_url(stored)`: its `***` password stands for
    the stored one (same user name), so saving the form untouched keeps the password. Anything else
    (no password, a new one, another user) is taken as typed."""
    parts, old = urlsplit(submitted), urlsplit(stored)
    if parts.password != REDACTED or old.password is None or parts.username != old.username:
        return submitted
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{old.password}@{host}"))


def clean_consent_version(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_CONSENT_VERSION:
        raise _field_error(
            "invalid_consent_version",
            "version",
            f"consent version must be 1-{MAX_CONSENT_VERSION} characters",
        )
    if _has_control_chars(value):
        raise _field_error(
            "invalid_consent_version", "version", "consent version contains control characters"
        )
    return value.strip()


def clean_reason(value: Any) -> str:
    """A reason staff or a client give for a change (flatten, reject, halt, forced unlink ...)."""
    return clean_plain_text(value, field="reason", code="invalid_reason", max_length=MAX_REASON)


def clean_actor(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 150:
        raise _field_error(
            "invalid_actor", "actor", "actor must be 1-150 characters naming who made the change"
        )
    return value.strip()
