"""Expected (what the engine's filled orders put there) vs actual (the broker's position) per child."""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from brokers.errors import BrokerError
from replication.allocator import replicated_positions
from replication.audit import audit
from replication.clients import ClientCache

logger = logging.getLogger(__name__)


class Grade(enum.StrEnum):
    OK = "ok"
    MINOR = "minor"  # off by less than one lot, or the child holds more than the engine placed
    MAJOR = "major"  # the child holds less than the engine placed (an exit or a fill is missing)
    UNKNOWN = "unknown"  # the broker could not be read


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


def reconcile(
    *,
    children: Sequence[Account] | None = None,
    clients: ClientCache | None = None,
    lot_sizes: dict[tuple[str, str], int] | None = None,
) -> list[Drift]:
    """Compare, for every child and instrument the engine touched, expected with actual."""
    clients = clients or ClientCache()
    if children is None:
        children = list(Account.objects.filter(role=Role.CHILD).exclude(status=AccountStatus.DISABLED))
    expected = replicated_positions(children=[c.pk for c in children])
    per_child: dict[int, dict[tuple[str, str, str], int]] = {c.pk: {} for c in children}
    for (cid, ex, sym, prod), (held, _, _) in expected.items():
        per_child.setdefault(cid, {})[(ex, sym, prod)] = held
    lots = lot_sizes or {}
    drifts: list[Drift] = []
    for child in children:
        wanted = per_child.get(child.pk, {})
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
        for (ex, sym, prod), qty in sorted(wanted.items()):
            have = None if actual is None else actual.get((ex, sym, prod), 0)
            lot = lots.get((ex, sym), 1)
            drifts.append(Drift(child.pk, ex, sym, prod, qty, have, lot, grade(qty, have, lot)))
    return drifts


def reconciliation_sweep(*, actor: str = "engine") -> list[Drift]:
    """Reconcile every child and record one audit row per drift that is not OK."""
    drifts = reconcile()
    bad = [d for d in drifts if d.grade != Grade.OK]
    with transaction.atomic():
        for d in bad:
            audit(
                kind="reconciliation_drift",
                actor=actor,
                account_id=d.child_id,
                message=f"{d.exchange}:{d.tradingsymbol} {d.product}: expected {d.expected}, "
                f"actual {d.actual} ({d.grade})",
                data={"expected": d.expected, "actual": d.actual, "grade": d.grade.value},
            )
    return drifts
