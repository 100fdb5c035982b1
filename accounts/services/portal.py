"""What a client does to its own account from the portal that no other service covers: withdrawing
consent. Giving consent, pausing and resuming are `account_give_consent` and `account_set_status`.

The engine reads consent at the send gate (`replication.gate`): an account without it gets no new
entries, while exits still go (what it holds is still brought back to what it is entitled to).
"""

from __future__ import annotations

from django.db import transaction

from accounts.models import Account
from accounts.services._common import clean_actor_or_raise, lock, refreshed, save_changes, state
from replication.services.audit_log import EventKind, audit

CONSENT_WITHDRAWN = "consent withdrawn: no new entries; exits continue"


def account_withdraw_consent(*, account: Account, actor: str) -> Account:
    """Withdraw the client's consent to replication: no new entries from now on, exits continue.

    Clears `consent_given_at` and `consent_version` in one audited change (the audit row keeps the
    terms and the time the consent was given, as its "before"). Withdrawing consent that is not
    given changes nothing and writes no audit row.
    """
    actor = clean_actor_or_raise(actor)
    with transaction.atomic():
        locked = lock(account)
        if locked.consent_given_at is None:
            return refreshed(account)
        before = state(locked)
        locked.consent_given_at = None
        locked.consent_version = ""
        delta = save_changes(locked, before)
        delta["consent"] = "withdrawn"
        audit(
            kind=EventKind.ACCOUNT_CONSENT_WITHDRAWN,
            message=CONSENT_WITHDRAWN,
            actor=actor,
            data=delta,
            account=locked,
        )
    return refreshed(account)
