"""Writes to linked accounts. Each change is validated in full first, then written with its audit row.

Audit rows (`ReplicationEvent`, kinds `account.*`) carry a before -> after diff; credential fields
show only that they changed, never a value. Every service raises `AccountError(code, message,
fields)` and writes nothing when its input is refused. Broker calls (`account_broker_client`,
`account_refresh_margins`) belong outside any transaction.
"""

from accounts.services._common import consent_version_current, kite_token_expiry
from accounts.services.broker_switch import account_switch_broker
from accounts.services.configuration import SETTING_NAMES, account_settings_validate, account_update_settings
from accounts.services.credentials import (
    account_broker_client,
    account_refresh_margins,
    account_set_credentials,
)
from accounts.services.engine_state import account_mark_needs_login, account_record_send_results
from accounts.services.lifecycle import (
    STATUS_TRANSITIONS,
    account_give_consent,
    account_promote_master,
    account_set_status,
)
from accounts.services.linking import account_link, account_link_validate
from accounts.services.unlinking import account_unlink
from accounts.validation import AccountError

__all__ = [
    "SETTING_NAMES",
    "STATUS_TRANSITIONS",
    "AccountError",
    "account_broker_client",
    "account_give_consent",
    "account_link",
    "account_link_validate",
    "account_mark_needs_login",
    "account_promote_master",
    "account_record_send_results",
    "account_refresh_margins",
    "account_set_credentials",
    "account_set_status",
    "account_settings_validate",
    "account_switch_broker",
    "account_unlink",
    "account_update_settings",
    "consent_version_current",
    "kite_token_expiry",
]
