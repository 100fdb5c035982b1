"""Broker error taxonomy (DESIGN §5). Every error says whether retrying can help."""

from __future__ import annotations


class BrokerError(Exception):
    """Base broker error. `permanent` errors will not succeed on retry."""

    code = "broker_error"
    permanent = True

    def __init__(self, message: str = "", *, code: str | None = None, http_status: int | None = None):
        super().__init__(message or self.code)
        self.message = message or self.code
        if code is not None:
            self.code = code
        self.http_status = http_status


class TokenExpired(BrokerError):
    """The session is dead; the account needs an interactive login."""

    code = "token_expired"
    permanent = True


class OrderRejected(BrokerError):
    """The broker or exchange refused the order (margin, RMS, holdings...)."""

    code = "order_rejected"
    permanent = True


class InputRejected(BrokerError):
    """A parameter was missing or invalid."""

    code = "input_rejected"
    permanent = True


class RateLimited(BrokerError):
    """HTTP 429: nothing was placed; retry after backing off."""

    code = "rate_limited"
    permanent = False


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or failed before accepting the request."""

    code = "broker_unavailable"
    permanent = False


class OutcomeUnknown(BrokerError):
    """A write was sent but its result is unknown (timeout, 5xx after send). Look it up by tag."""

    code = "outcome_unknown"
    permanent = False
