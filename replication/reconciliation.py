"""Reconciliation: entitled (E) vs replicated (H, what the engine's filled orders put there) vs actual
(the broker's position), per child and instrument (DESIGN §3.7).

Grades, the worst of the two comparisons:
- H against E: H beyond E with no exit working (the child holds more than the rules entitle it to,
  e.g. still holding after the master exited) is `major`; beyond E while an exit is working, or
  below E (an entry that did not fill: entries are never chased), is `minor`;
- actual against H: the broker short of H (an exit or a fill missing) is `major`; off by less than
  a lot, or more than H (the client's own trading), is `minor`;
- `unknown` when the broker could not be read.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Ownership, Role
from brokers.errors import BrokerError
from replication.clients import ClientCache
from replication.entitlement import NO_HOLDING, entitled, holdings
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)


class Grade(enum.StrEnum):
    OK = "ok"
    MINOR = "minor"  # off by less than a lot, client's own extra, converging, or an entry not filled
    MAJOR = "major"  # above entitlement with no exit working, or the broker short of the engine's orders
    UNKNOWN = "unknown"  # the broker could not be read


_RANK = {Grade.OK: 0, Grade.MINOR: 1, Grade.MAJOR: 2, Grade.UNKNOWN: 3}


@dataclass(frozen=True, slots=True)
class Drift:
    child_id: int
    exchange: str
    tradingsymbol: str
    product: str
    expected: int
    actual: int | None
    lot_size: int
    grade: Grade
    entitled: int | None = None  # E; None where it was not computed
    exit_working: bool = False  # an exit toward E is in flight

    @property
    def difference(self) -> int | None:
        return None if self.actual is None else self.actual - self.expected


def grade(expected: int, actual: int | None, lot_size: int) -> Grade:
    if actual is None:
        return Grade.UNKNOWN
    if actual == expected:
        return Grade.OK
    if abs(actual - expected) < max(lot_size, 1):
        return Grade.MINOR
    # Holding beyond what the engine placed is the client's own trading; missing quantity is not.
    if (expected >= 0 and actual > expected) or (expected <= 0 and actual < expected):
        return Grade.MINOR
    return Grade.MAJOR


def grade_entitlement(entitled_quantity: int, held: int, *, exit_working: bool) -> Grade:
    """H against E: above E (in size, or on the wrong side) is major unless an exit is working;
    below E is ok (entries are never chased)."""
    if held == entitled_quantity:
        return Grade.OK
    beyond = (held > 0 and held > max(entitled_quantity, 0)) or (
        held < 0 and held < min(entitled_quantity, 0)
    )
    if beyond:
        return Grade.MINOR if exit_working else Grade.MAJOR
    # Below its entitlement (an entry that did not fill, or still working): entries are never
    # chased, and holding less than entitled puts no client money at risk.
    return Grade.OK


def worst(*grades: Grade) -> Grade:
    return max(grades, key=_RANK.__getitem__)


def reconcile(
    *,
    children: Sequence[Account] | None = None,
    clients: ClientCache | None = None,
    lot_sizes: dict[tuple[str, str], int] | None = None,
) -> list[Drift]:
    """Compare, for every child and instrument the engine touched, expected with actual.

    Pending accounts (a client's claim not yet proven by a broker login) are left out, given or
    not: their books are not read.
    """
    clients = clients or ClientCache()
    if children is None:
        children = list(
            Account.objects.filter(role=Role.CHILD)
            .exclude(status=AccountStatus.DISABLED)
            .exclude(ownership=Ownership.PENDING)
        )
    children = [child for child in children if not child.is_pending]
    ids = [c.pk for c in children]
    held = holdings(children=ids)
    instruments = {k[1:] for k in held}
    # Graded against what convergence owes (entries and master exits as far as they filled): a
    # stop-loss resting at the master makes no child's holding "beyond" its entitlement yet.
    entitled_now = entitled(instruments, children=ids, in_flight=False)
    per_child: dict[int, set[tuple[str, str, str]]] = {c.pk: set() for c in children}
    for key in held:
        per_child.setdefault(key[0], set()).add(key[1:])
    for key in entitled_now:
        per_child.setdefault(key[0], set()).add(key[1:])
    lots = lot_sizes or {}
    drifts: list[Drift] = []
    for child in children:
        wanted = per_child.get(child.pk, set())
        if not wanted:
            continue
        try:
            actual = {
                (p.exchange, p.tradingsymbol, p.product.value): p.quantity
                for p in clients.get(child).positions()
            }
        except (BrokerError, CredentialDecryptError) as exc:  # an unreadable child is reported, not fatal
            logger.warning("positions of child %s unavailable: %s", child.pk, exc)
            actual = None
        for ex, sym, prod in sorted(wanted):
            key = (child.pk, ex, sym, prod)
            h = held.get(key, NO_HOLDING)
            e = entitled_now.get(key, 0)
            working = bool(h.pending_sell if h.held > 0 else h.pending_buy if h.held < 0 else False)
            have = None if actual is None else actual.get((ex, sym, prod), 0)
            lot = lots.get((ex, sym), 1)
            g = worst(
                grade(h.held, have, lot),
                grade_entitlement(e, h.held, exit_working=working),
            )
            drifts.append(Drift(child.pk, ex, sym, prod, h.held, have, lot, g, e, working))
    return drifts


def reconciliation_sweep(*, actor: str = "engine") -> list[Drift]:
    """Reconcile every child and record one audit row per drift that is not OK."""
    drifts = reconcile()
    bad = [d for d in drifts if d.grade != Grade.OK]
    with transaction.atomic():
        for d in bad:
            audit(
                kind=EventKind.RECONCILIATION_DRIFT,
                actor=actor,
                account_id=d.child_id,
                message=f"{d.exchange}:{d.tradingsymbol} {d.product}: entitled {d.entitled}, "
                f"replicated {d.expected}, actual {d.actual} ({d.grade})",
                data={
                    "entitled": d.entitled,
                    "expected": d.expected,
                    "actual": d.actual,
                    "grade": d.grade.value,
                },
            )
    return drifts
