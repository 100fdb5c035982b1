"""The one send gate (DESIGN §3.7): may this order write go to this child's broker now?

Every order write asks it at send time: entries, exits, owed exits, modifications, cancels,
corrective orders, flatten orders, resends of an absent unknown, and the queue mode's shard tasks
(they all go through `Replicator.dispatch`, `Replicator.modify_open` or `Replicator.cancel_open`,
which read the switches in the same breath as they claim what to send).

The rules, in order:
- the engine halted, the child halted, needing a login, disabled, a claim not yet proven by a broker
  login, or no longer a child: nothing goes;
- dry-run (engine, settings or child): nothing goes; entries and exits are recorded as dry runs;
- entries only: the engine or the child paused, the circuit breaker tripped, consent withdrawn.
Paused children, tripped breakers and withdrawn consent still get their exits.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from accounts.models import Account, AccountStatus, Ownership, Role
from replication.controls import engine_control_get
from replication.models import AllocationKind, EngineControl


class Action(enum.StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    MODIFY = "modify"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class ChildSwitches:
    """What the gate reads of a child (a row, not a model: read fresh at send time)."""

    pk: int
    status: str
    role: str = Role.CHILD
    dry_run: bool = False
    consent_given_at: datetime | None = None
    breaker_tripped_at: datetime | None = None
    ownership: str = Ownership.VOUCHED


@dataclass(frozen=True, slots=True)
class Switches:
    """The engine's kill switches as read at send time."""

    halted: bool
    paused: bool
    dry_run: bool

    @classmethod
    def read(cls, control: EngineControl | None = None) -> Switches:
        control = control or engine_control_get()
        return cls(
            halted=control.halted,
            paused=control.paused,
            dry_run=bool(control.dry_run or settings.DRY_RUN),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    send: bool
    dry_run: bool = False
    code: str = ""
    reason: str = ""


SEND = Verdict(True)
DRY_RUN = Verdict(False, True, "dry_run", "dry run: not sent")


def decide(action: Action, engine: Switches, child: ChildSwitches) -> Verdict:
    """The gate's answer for one order write of one child."""
    if engine.halted:
        return Verdict(False, code="engine_halted", reason="engine halted: nothing is sent")
    if child.status == AccountStatus.HALTED:
        return Verdict(False, code="child_halted", reason="child halted: nothing is sent")
    if child.status == AccountStatus.NEEDS_LOGIN:
        return Verdict(False, code="needs_login", reason="child needs a broker login")
    if child.status == AccountStatus.DISABLED:
        return Verdict(False, code="child_disabled", reason="child disabled: nothing is sent")
    if child.ownership == Ownership.PENDING:
        return Verdict(
            False, code="ownership_pending", reason="not yet proven by a broker login: nothing is sent"
        )
    if child.role != Role.CHILD:
        return Verdict(False, code="not_a_child", reason="the account is no longer a child")
    if engine.dry_run or child.dry_run:
        if action in (Action.MODIFY, Action.CANCEL):
            return Verdict(False, True, "dry_run", "dry run: nothing at the broker to change")
        return DRY_RUN
    if action != Action.ENTRY:
        return SEND
    if engine.paused:
        return Verdict(False, code="engine_paused", reason="engine paused: no new entries")
    if child.status == AccountStatus.PAUSED:
        return Verdict(False, code="child_paused", reason="child paused: no new entries")
    if child.breaker_tripped_at is not None:
        return Verdict(
            False,
            code="breaker_tripped",
            reason="circuit breaker tripped after repeated failures: entries paused",
        )
    if child.consent_given_at is None:
        return Verdict(False, code="no_consent", reason="consent withdrawn: no new entries")
    return SEND


def in_dry_run(engine: Switches, child: ChildSwitches) -> bool:
    """Whether the child is in dry run now (the engine's switch or its own), whatever else holds
    its orders back (a halt comes first at the gate): its entitlement counts its dry runs while
    this holds (`replication.entitlement`), so what it holds must count them too."""
    return engine.dry_run or child.dry_run


def action_for(kind: str) -> Action:
    """Orders of an opening allocation are entries; everything else reduces a position."""
    return Action.ENTRY if kind == AllocationKind.OPEN else Action.EXIT


SWITCH_FIELDS = ("pk", "status", "role", "dry_run", "consent_given_at", "breaker_tripped_at", "ownership")


def child_switches(ids: Iterable[int]) -> dict[int, ChildSwitches]:
    """The children's switches, read now (one query)."""
    return {
        row[0]: ChildSwitches(*row)
        for row in Account.objects.filter(pk__in=list(ids)).values_list(*SWITCH_FIELDS)
    }


def switches_of(account: Account) -> ChildSwitches:
    return ChildSwitches(
        account.pk,
        account.status,
        account.role,
        account.dry_run,
        account.consent_given_at,
        account.breaker_tripped_at,
        account.ownership,
    )
