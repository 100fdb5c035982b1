"""Entitlement rows (DESIGN §3.7): which (child, instrument) pairs the convergence stage follows."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Q

from replication.bulk import batch_size
from replication.entitlement import Instrument, Key
from replication.models import Entitlement


def _key_q(inst: Instrument) -> Q:
    return Q(exchange=inst[0], tradingsymbol=inst[1], product=inst[2])


def entitlements_unsettle(*, keys: dict[Key, int]) -> None:
    """Mark these (child, instrument) entitlements for the convergence stage (create missing rows).

    `keys` maps each (child, instrument) to its lot size. Called inside the transaction that commits
    what changed them (that transaction checked the lease).
    """
    if not keys:
        return
    Entitlement.objects.bulk_create(
        [
            Entitlement(child_id=k[0], exchange=k[1], tradingsymbol=k[2], product=k[3], lot_size=lot or 1)
            for k, lot in keys.items()
        ],
        ignore_conflicts=True,
        batch_size=batch_size(Entitlement),
    )
    by_instrument: dict[Instrument, list[int]] = defaultdict(list)
    for k in keys:
        by_instrument[k[1:]].append(k[0])
    for inst, child_ids in by_instrument.items():
        Entitlement.objects.filter(_key_q(inst), child_id__in=child_ids, settled=True).update(settled=False)


def entitlements_unsettle_instrument(*, exchange: str, tradingsymbol: str, product: str) -> int:
    """Every child's entitlement in this instrument is followed again (an allocation there was
    resized). Called inside the transaction that unsettles the resized allocation's children."""
    return Entitlement.objects.filter(exchange=exchange, tradingsymbol=tradingsymbol, product=product).update(
        settled=False
    )
