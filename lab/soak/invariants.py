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
  its replicated position (the filled quantities of the engine's own orders);
- **starved exit** (DESIGN §3.7): a child still holding engine-placed quantity (the filled
  quantities of its broker orders that carry an engine tag) in an instrument where the master is
  flat, after faults cleared and the engine had `settle` ticks to send the owed exit. The session
  also records those it sees during the run (`run.py`);
- **cap breach**: a child order at the broker above the child's caps (max lots per order, max
  quantity, max order value: quantity x price, a MARKET order priced at its fill price or, unfilled,
  the LTP; an SL-M at its trigger). Entries and other orders (exits, modifications) are named apart.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from accounts.models import Account, Role
from brokers.paper.models import PaperInstrument, PaperOrder, PaperPosition
from replication.allocation import replicated_positions
from replication.models import AllocationKind, MappingStatus, OrderMapping

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
    starved: list[str] = field(default_factory=list)
    cap_breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.duplicates
            or self.orphans
            or self.lost
            or self.unsettled
            or self.drift
            or self.starved
            or self.cap_breaches
        )

    def problems(self) -> list[str]:
        """One line per broken invariant, with the first few culprits."""
        out = []
        for name in ("duplicates", "orphans", "lost", "unsettled", "drift", "starved", "cap_breaches"):
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
    found.starved = starved_exits(children)
    found.cap_breaches = cap_breaches(children)
    return found


def engine_held(children: dict[str, int]) -> dict[tuple[str, str], int]:
    """Engine-placed position per (child user id, tradingsymbol): the signed filled quantities of
    the child's broker orders whose tag is an engine intent's."""
    tags = set(
        OrderMapping.objects.filter(child_id__in=list(children.values())).values_list("tag", flat=True)
    )
    held: dict[tuple[str, str], int] = defaultdict(int)
    for user, symbol, side, filled, tag in PaperOrder.objects.filter(
        account__user_id__in=list(children), filled_quantity__gt=0
    ).values_list("account__user_id", "tradingsymbol", "side", "filled_quantity", "tag"):
        if tag in tags:
            held[(user, symbol)] += filled if side == "BUY" else -filled
    return {key: qty for key, qty in held.items() if qty}


def master_flat_symbols(symbols: set[str]) -> set[str]:
    """Which of `symbols` the enabled master holds nothing in (at its broker)."""
    master = Account.objects.filter(role=Role.MASTER).exclude(status="disabled").first()
    if master is None:
        return set()
    held: dict[str, int] = defaultdict(int)
    for symbol, quantity in PaperPosition.objects.filter(account__user_id=master.broker_user_id).values_list(
        "tradingsymbol", "quantity"
    ):
        held[symbol] += quantity
    return {symbol for symbol in symbols if not held.get(symbol)}


def starved_exits(children: dict[str, int]) -> list[str]:
    """Children holding engine-placed quantity where the master is flat (read now: the caller ran
    the settle ticks after the faults cleared)."""
    held = engine_held(children)
    flat = master_flat_symbols({symbol for _, symbol in held})
    return sorted(f"{user} {symbol}: holds {qty}" for (user, symbol), qty in held.items() if symbol in flat)


def cap_breaches(children: dict[str, int]) -> list[str]:
    """Child orders at the broker above the child's caps, entries and other orders named apart."""
    caps = {
        user: (lots, qty, value)
        for user, lots, qty, value in Account.objects.filter(broker_user_id__in=list(children))
        .exclude(max_lots_per_order=None, max_quantity=None, max_order_value=None)
        .values_list("broker_user_id", "max_lots_per_order", "max_quantity", "max_order_value")
    }
    if not caps:
        return []
    sizes = dict(PaperInstrument.objects.values_list("tradingsymbol", "lot_size"))
    ltps = dict(PaperInstrument.objects.values_list("tradingsymbol", "last_price"))
    rows = list(
        PaperOrder.objects.filter(account__user_id__in=list(caps)).values_list(
            "account__user_id",
            "tag",
            "tradingsymbol",
            "side",
            "order_type",
            "quantity",
            "price",
            "trigger_price",
            "average_price",
            "filled_quantity",
        )
    )
    kinds = dict(
        OrderMapping.objects.filter(tag__in=[r[1] for r in rows if r[1]]).values_list(
            "tag", "allocation__kind"
        )
    )
    out = []
    for user, tag, symbol, side, order_type, quantity, price, trigger, average, filled in rows:
        max_lots, max_qty, max_value = caps[user]
        if order_type in ("LIMIT", "SL") and price > 0:
            at = price
        elif order_type == "SL-M":
            at = trigger
        else:
            at = average if filled else ltps.get(symbol, Decimal(0))
        broken = []
        lots = quantity // max(1, sizes.get(symbol, 1))
        if max_lots is not None and lots > max_lots:
            broken.append(f"{lots} lots > {max_lots}")
        if max_qty is not None and quantity > max_qty:
            broken.append(f"quantity {quantity} > {max_qty}")
        if max_value is not None and quantity * at > max_value:
            broken.append(f"value {quantity * at:.2f} > {max_value}")
        if broken:
            what = "entry" if kinds.get(tag) == AllocationKind.OPEN else f"{kinds.get(tag, 'untagged')} order"
            out.append(f"{user} {tag} {what} {side} {quantity} {symbol} {order_type}: {'; '.join(broken)}")
    return sorted(out)


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
