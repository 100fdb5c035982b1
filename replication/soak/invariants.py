"""What must hold after any session, however many faults and crashes it went through (issue 7).

Read from the database alone: the engine's tables on one side, the paper exchange that backs every
child account (directly, or behind the Kite simulator) on the other. Definitions:

- **broker order**: a child's order at the exchange (`PaperOrder`), matched to an intent by its tag;
- **wanted intent**: an `OrderMapping` with `quantity > 0` that is not SKIPPED or DRY_RUN (the engine
  decided to send it);
- **duplicate**: a tag that has more than one broker order;
- **orphan**: a child broker order whose tag belongs to no intent (an order without a committed
  intent);
- **lost**: a wanted intent that is neither placed at the broker exactly once nor surfaced to staff:
  no broker order carries its tag, and it is not final as FAILED, REJECTED or CANCELLED with a reason
  (the reason is what the dashboards and the replication log show). An intent with a broker order
  is never lost, whatever its status;
- **unsettled**: a wanted intent still PLANNED, SENDING or UNKNOWN (the engine has not finished with
  it); after a quiet period there must be none;
- **drift**: the database and the broker disagree: an intent's broker order id is not the id of
  the order carrying its tag, or a child's position in an instrument at the broker differs from
  its replicated position (the filled quantities of the engine's own orders).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from accounts.models import Account, Role
from brokers.paper.models import PaperOrder, PaperPosition
from replication.allocator import replicated_positions
from replication.models import MappingStatus, OrderMapping

NOT_WANTED = (MappingStatus.SKIPPED, MappingStatus.DRY_RUN)
SURFACED = frozenset({MappingStatus.FAILED, MappingStatus.REJECTED, MappingStatus.CANCELLED})
IN_FLIGHT = frozenset({MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN})


@dataclass(slots=True)
class Findings:
    """The invariants' verdict; every list names what broke it (tags, order ids, positions)."""

    wanted: int = 0
    child_orders: int = 0
    duplicates: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.orphans or self.lost or self.unsettled or self.drift)

    def problems(self) -> list[str]:
        """One line per broken invariant, with the first few culprits."""
        out = []
        for name in ("duplicates", "orphans", "lost", "unsettled", "drift"):
            items: list[str] = getattr(self, name)
            if items:
                shown = ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
                out.append(f"{name}: {shown}")
        return out


def check_invariants() -> Findings:
    """Compare every child's broker orders and positions with the engine's intents."""
    children = dict(Account.objects.filter(role=Role.CHILD).values_list("broker_user_id", "pk"))
    orders = list(
        PaperOrder.objects.filter(account__user_id__in=list(children)).values_list(
            "account__user_id", "order_id", "tag"
        )
    )
    per_tag: Counter[str] = Counter(tag for _, _, tag in orders if tag)
    order_of_tag = {tag: order_id for _, order_id, tag in orders if tag}
    mappings = list(
        OrderMapping.objects.filter(quantity__gt=0)
        .exclude(status__in=NOT_WANTED)
        .values_list("tag", "status", "reason", "broker_order_id")
    )
    all_tags = set(OrderMapping.objects.values_list("tag", flat=True))
    found = Findings(wanted=len(mappings), child_orders=len(orders))
    found.duplicates = sorted(tag for tag, n in per_tag.items() if n > 1)
    found.orphans = sorted(
        f"{user}:{order_id}" for user, order_id, tag in orders if not tag or tag not in all_tags
    )
    for tag, status, reason, broker_order_id in mappings:
        placed = per_tag.get(tag, 0)
        if status in IN_FLIGHT:
            found.unsettled.append(f"{tag}({status})")
        if placed == 0 and not (status in SURFACED and reason.strip()):
            found.lost.append(f"{tag}({status})")
        if placed == 1 and status not in IN_FLIGHT and broker_order_id != order_of_tag[tag]:
            found.drift.append(f"{tag}: broker order {order_of_tag[tag]}, engine {broker_order_id or '-'}")
    found.drift.extend(_position_drift(children))
    return found


def _position_drift(children: dict[str, int]) -> list[str]:
    """Children whose broker position differs from their replicated position, per instrument."""
    broker: dict[tuple[int, str, str, str], int] = defaultdict(int)
    for user, exchange, symbol, product, quantity in PaperPosition.objects.filter(
        account__user_id__in=list(children)
    ).values_list("account__user_id", "exchange", "tradingsymbol", "product", "quantity"):
        broker[(children[user], exchange, symbol, product)] += quantity
    engine = {
        key: held for key, (held, _, _) in replicated_positions(children=list(children.values())).items()
    }
    names = {pk: user for user, pk in children.items()}
    return sorted(
        f"{names[key[0]]} {key[2]}: broker {broker.get(key, 0)}, engine {engine.get(key, 0)}"
        for key in set(broker) | set(engine)
        if broker.get(key, 0) != engine.get(key, 0)
    )


def describe_tags(tags: list[str]) -> list[str]:
    """The story of each tag, for a failed soak: the intent, its audit rows, its broker orders."""
    from replication.models import ReplicationEvent

    lines = []
    for tag in tags:
        mapping = OrderMapping.objects.filter(tag=tag).select_related("child", "allocation").first()
        if mapping is None:
            lines.append(f"{tag}: no intent")
            continue
        m = mapping
        sent = f"{m.sent_at:%H:%M:%S.%f}" if m.sent_at else "-"
        lines.append(
            f"{tag}: {m.child.broker_user_id} {m.side} {m.quantity} {m.tradingsymbol} {m.order_type} "
            f"status={m.status} attempts={m.attempts} epoch={m.epoch} created={m.created_at:%H:%M:%S.%f} "
            f"sent={sent} broker_order_id={m.broker_order_id or '-'}"
        )
        for kind, at, message in ReplicationEvent.objects.filter(mapping=m).values_list(
            "kind", "created_at", "message"
        ):
            lines.append(f"  event {at:%H:%M:%S.%f} {kind}: {message[:200]}")
        for order_id, placed, status, filled in PaperOrder.objects.filter(tag=tag).values_list(
            "order_id", "placed_at", "status", "filled_quantity"
        ):
            lines.append(f"  broker {order_id} placed {placed:%H:%M:%S.%f} {status} filled {filled}")
    return lines
