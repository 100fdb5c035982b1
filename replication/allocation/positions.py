"""The replicated position: what the engine's own filled orders put in a child's account."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db.models import Sum

from brokers.types import Side
from replication.entitlement import CORRECTIVE
from replication.models import MappingStatus, OrderMapping

__all__ = ["CORRECTIVE", "PENDING", "replicated_positions"]

PENDING = (MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN, MappingStatus.OPEN)
# `CORRECTIVE` (imported above) is the `Allocation.margin_source` of a staff corrective order
# (replication.services.reconciliation_correct). A corrective order brings the child's broker
# position back to its replicated position, so it is not part of that position: were it counted,
# the drift it fixes would reappear the moment it fills.


def replicated_positions(
    *,
    exchange: str | None = None,
    tradingsymbol: str | None = None,
    product: str | None = None,
    children: Sequence[int] | None = None,
) -> dict[tuple[int, str, str, str], tuple[int, int, int]]:
    """Per (child, exchange, symbol, product): (held, pending buy, pending sell).

    held = filled buys − filled sells of the engine's own orders (staff corrective orders excluded);
    pending = the unfilled remainder of orders not yet final, per side.
    """
    qs = OrderMapping.objects.filter(quantity__gt=0).exclude(allocation__margin_source=CORRECTIVE)
    if exchange:
        qs = qs.filter(exchange=exchange, tradingsymbol=tradingsymbol, product=product)
    if children is not None:
        qs = qs.filter(child_id__in=list(children))
    rows = qs.values("child_id", "exchange", "tradingsymbol", "product", "side", "status").annotate(
        filled=Sum("filled_quantity"), qty=Sum("quantity")
    )
    out: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        key = (r["child_id"], r["exchange"], r["tradingsymbol"], r["product"])
        sign = 1 if r["side"] == Side.BUY else -1
        out[key][0] += sign * (r["filled"] or 0)
        if r["status"] in PENDING:
            out[key][1 if sign > 0 else 2] += (r["qty"] or 0) - (r["filled"] or 0)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}
