"""Helpers shared by the staff services."""

from __future__ import annotations

from accounts.validation import AccountError, clean_reason


def clean_staff_reason(reason: str, *, refused: type[ValueError]) -> str:
    """A staff reason for the audit trail, checked as every reason is (`accounts.validation`)."""
    try:
        return clean_reason(reason)
    except AccountError as exc:
        raise refused(exc.message) from None
