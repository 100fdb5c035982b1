"""Child intents for allocations: size every eligible child and commit tagged intents (no broker writes).

Entries use the pure sizing module (`replication.sizing`); exits size each child's *replicated*
position (what the engine's own filled orders put there) and never touch anything else.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from accounts.models import Account, AccountStatus, Ownership, Role
from brokers.errors import BrokerError, TokenExpired
from brokers.types import InstrumentKey, OrderRequest, OrderType, Product, Side
from replication.bulk import batch_size, insert_rows
from replication.clients import CHILD_SECRETS, ClientCache
from replication.daypnl import replicated_day_pnl
from replication.entitlement import (
    CORRECTIVE,
    NO_HOLDING,
    Instrument,
    Key,
    entitled,
    holdings,
    owed_exit,
)
from replication.fanout import FanOut
from replication.gate import Action, ChildSwitches, Switches, Verdict, decide, switches_of
from replication.lease import Lease, lease_check
from replication.models import (
    Allocation,
    AllocationKind,
    EngineControl,
    Entitlement,
    MappingStatus,
    MarginSnapshot,
    OrderMapping,
    ReplicationEvent,
)
from replication.replicator import Replicator, mark_needs_login
from replication.sizing import (
    Attribution,
    CapitalMode,
    ChildEntry,
    ChildLimits,
    ChildProfile,
    GroupPlan,
    Leg,
    MarginSource,
    size_entry,
    slice_quantity,
)

logger = logging.getLogger(__name__)

PENDING = (MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN, MappingStatus.OPEN)
# `CORRECTIVE` (imported above) is the `Allocation.margin_source` of a staff corrective order
# (replication.services.reconciliation_correct). A corrective order brings the child's broker
# position back to its replicated position, so it is not part of that position: were it counted,
# the drift it fixes would reappear the moment it fills.
__all__ = ["CORRECTIVE", "PENDING", "create_intents", "make_tag", "replicated_positions"]
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def make_tag(allocation_id: int, child_id: int, slice_no: int) -> str:
    """Deterministic, unique, alphanumeric, at most 20 characters (Kite's tag limit)."""
    tag = f"R{_b36(allocation_id)}C{_b36(child_id)}S{_b36(slice_no)}"
    if len(tag) > 20:
        raise ValueError(f"tag {tag} is longer than 20 characters")
    return tag


def eligible_children() -> QuerySet[Account]:
    """Linked, enabled, consented children (not pending claims) with their latest margin snapshot."""
    latest = MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by("-taken_at", "-id")
    return (
        Account.objects.filter(role=Role.CHILD, consent_given_at__isnull=False)
        .exclude(status=AccountStatus.DISABLED)
        .exclude(ownership=Ownership.PENDING)
        .annotate(
            snap_used=Subquery(latest.values("used_margin")[:1]),
            snap_available=Subquery(latest.values("available_margin")[:1]),
            snap_at=Subquery(latest.values("taken_at")[:1]),
        )
        .defer(*Account.SECRET_FIELDS)  # decrypted only when a client is built (ClientCache)
        .order_by("id")
    )


CHILD_ROW_FIELDS = (
    "pk",
    "status",
    "breaker_tripped_at",
    "capital_mode",
    "fixed_capital",
    "multiplier",
    "dry_run",
    "consent_given_at",
    "allowed_instruments",
    "blocked_instruments",
    "allowed_products",
    "max_lots_per_order",
    "max_quantity",
    "max_order_value",
    "max_open_positions",
    "daily_loss_limit",
    "snap_used",
    "snap_available",
    "snap_at",
)


class ChildRow(NamedTuple):
    """What sizing needs of a child, read with `.values_list` (no model instances: one event
    sizes every child, and building a thousand models costs more than sizing them)."""

    pk: int
    status: str
    breaker_tripped_at: datetime | None
    capital_mode: str
    fixed_capital: Decimal | None
    multiplier: Decimal
    dry_run: bool
    consent_at: datetime | None
    allowed_instruments: list[str]
    blocked_instruments: list[str]
    allowed_products: list[str]
    max_lots_per_order: int | None
    max_quantity: int | None
    max_order_value: Decimal | None
    max_open_positions: int | None
    daily_loss_limit: Decimal | None
    snap_used: Decimal | None
    snap_available: Decimal | None
    snap_at: datetime | None


def eligible_child_rows() -> list[ChildRow]:
    return [ChildRow(*values) for values in eligible_children().values_list(*CHILD_ROW_FIELDS)]


def child_rows(ids: Iterable[int]) -> dict[int, ChildRow]:
    """These children's sizing rows (limits, latest snapshot), if they are still eligible."""
    qs = eligible_children().filter(pk__in=list(ids)).values_list(*CHILD_ROW_FIELDS)
    return {values[0]: ChildRow(*values) for values in qs}


def refresh_child_margins(
    children: Sequence[Account], *, clients: ClientCache, fanout: FanOut
) -> dict[int, MarginSnapshot]:
    """Read funds for these children concurrently and store one snapshot each (batched).

    A child whose session is dead moves to NEEDS_LOGIN (audited) and gets no snapshot.
    """
    expired: list[int] = []

    def read(child: Account) -> list[MarginSnapshot]:
        try:
            f = clients.get(child).funds()
        except TokenExpired:
            expired.append(child.pk)
            return []
        except BrokerError as exc:
            logger.warning("funds of child %s unavailable: %s", child.pk, exc)
            return []
        except Exception:  # credentials unreadable and the like: the child is skipped, not the tick
            logger.exception("funds of child %s unavailable", child.pk)
            return []
        return [
            MarginSnapshot(
                account_id=child.pk, used_margin=f.used, available_margin=f.available, capital=f.capital
            )
        ]

    snaps = fanout.map(read, list(children))
    MarginSnapshot.objects.bulk_create(snaps, batch_size=batch_size(MarginSnapshot))
    if expired:
        mark_needs_login(expired, reason="broker session expired while reading margins")
    return {s.account_id: s for s in snaps}


def _limits(c: ChildRow) -> ChildLimits:
    return ChildLimits(
        allowed_instruments=frozenset(c.allowed_instruments or ()),
        blocked_instruments=frozenset(c.blocked_instruments or ()),
        allowed_products=frozenset(c.allowed_products or ()),
        max_lots_per_order=c.max_lots_per_order,
        max_quantity=c.max_quantity,
        max_order_value=c.max_order_value,
        max_open_positions=c.max_open_positions,
        daily_loss_limit=c.daily_loss_limit,
    )


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


def prepare_exits(closes: Sequence[Allocation], replicator: Replicator) -> None:
    """Before exits are sized: cancel open entries where the master went flat, refresh fills."""
    instruments = {(a.exchange, a.tradingsymbol, a.product) for a in closes}
    flat = {(a.exchange, a.tradingsymbol, a.product) for a in closes if a.exit_ratio == 1}
    q = Q()
    for ex, sym, prod in instruments:
        q |= Q(exchange=ex, tradingsymbol=sym, product=prod)
    open_here = list(
        OrderMapping.objects.filter(q, status__in=PENDING)
        .select_related("child", "allocation")
        .defer(*CHILD_SECRETS)
    )
    entries = [
        m
        for m in open_here
        if m.allocation.kind == AllocationKind.OPEN and (m.exchange, m.tradingsymbol, m.product) in flat
    ]
    withdraw = [m for m in entries if m.status == MappingStatus.PLANNED]
    if withdraw:
        with transaction.atomic():
            lease_check(replicator.lease)
            now = timezone.now()
            for m in withdraw:
                m.set_status(MappingStatus.CANCELLED)
                m.reason, m.reason_code, m.finished_at = (
                    "master went flat before it was sent",
                    "master_flat",
                    now,
                )
            OrderMapping.objects.bulk_update(withdraw, ["status", "reason", "reason_code", "finished_at"])
            ReplicationEvent.objects.bulk_create(
                ReplicationEvent(
                    kind="intent_withdrawn",
                    account_id=m.child_id,
                    allocation_id=m.allocation_id,
                    mapping_id=m.pk,
                    message=f"{m.tag} withdrawn: master went flat",
                )
                for m in withdraw
            )
    cancel = [m for m in entries if m.status == MappingStatus.OPEN]
    if cancel:
        replicator.cancel_open(
            cancel, reason="master went flat; a late fill must not leave the child holding"
        )
    children = {m.child_id for m in open_here}
    if children:
        replicator.follow_up(children=children, recover=True)


def create_intents(
    group: Sequence[Allocation], *, lease: Lease, control: EngineControl, replicator: Replicator
) -> int:
    """Size every eligible child for one group of allocations and commit the intents.

    Entries: every eligible child, by the sizing rules. Exits: every child holding or entitled in
    the instrument, by its entitlement (DESIGN §3.7); those children's entitlement rows are marked
    unsettled in the same transaction, so the convergence stage follows them until H equals E.
    """
    group = sorted(group, key=lambda a: a.pk)
    engine = Switches.read(control)
    if group[0].kind == AllocationKind.OPEN:
        rows = _entry_rows(group, control, engine, replicator)
        followed: set[Key] = set()
    else:
        rows, followed = _exit_rows(group, engine, replicator)
    has_buy = any(a.side == Side.BUY for a in group)
    for m in rows:
        m.wave = 1 if has_buy and m.side == Side.SELL else 0
        m.epoch = lease.epoch
    # Entries alone never make an exit owed: the entitlement rows are made (and followed by the
    # convergence stage) when something can move E below H — an exit, a rescaled allocation —
    # for every child holding, entitled or with an order in flight there. Keeping them out of the
    # entry path keeps a thousand-child fan-out from waiting on them.
    lot_sizes = {(a.exchange, a.tradingsymbol, a.product): a.lot_size for a in group}
    touched = {key: lot_sizes.get(key[1:], 1) for key in followed}
    with transaction.atomic():
        lease_check(lease)
        claimed = Allocation.objects.filter(pk__in=[a.pk for a in group], sized=False).update(sized=True)
        if claimed != len(group):
            raise RuntimeError(f"allocations of group {group[0].group_key} were sized concurrently")
        insert_rows(OrderMapping, rows)
        created = rows
        entitlements_unsettle(touched)
        # One audit row per allocation for the whole batch: the intents themselves are the rows
        # just written (each with its status and reason); every later change gets its own event.
        ReplicationEvent.objects.bulk_create(
            ReplicationEvent(
                kind="allocation_sized",
                account_id=a.master_id,
                allocation=a,
                message=_sized_message(a, created),
                data=_status_counts(a, created),
            )
            for a in group
        )
    return sum(1 for m in created if m.status == MappingStatus.PLANNED)


def _key_q(inst: Instrument) -> Q:
    return Q(exchange=inst[0], tradingsymbol=inst[1], product=inst[2])


def entitlements_unsettle(keys: dict[Key, int]) -> None:
    """Mark these (child, instrument) entitlements for the convergence stage (create missing rows).

    Call inside the transaction that commits what changed them.
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


def _status_counts(a: Allocation, created: Sequence[IntentRow]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for m in created:
        if m.allocation_id == a.pk:
            counts[m.status] += 1
    return dict(counts)


def _sized_message(a: Allocation, created: Sequence[IntentRow]) -> str:
    counts = _status_counts(a, created)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"child intents for allocation {a.pk}: {parts or 'none'}"


def _entry_verdict(child: ChildRow, engine: Switches) -> Verdict:
    """The send gate for an entry of an eligible child (linked, enabled, consented)."""
    return decide(
        Action.ENTRY,
        engine,
        ChildSwitches(
            child.pk,
            child.status,
            Role.CHILD,
            child.dry_run,
            child.consent_at,
            child.breaker_tripped_at,
        ),
    )


def _entry_rows(
    group: Sequence[Allocation], control: EngineControl, engine: Switches, replicator: Replicator
) -> list[IntentRow]:
    legs = tuple(
        Leg(
            a.exchange,
            a.tradingsymbol,
            a.product,
            a.side,
            a.master_lots,
            a.lot_size,
            a.reference_price or a.price,  # order-value caps: LTP for MARKET (§3.3 step 7)
            order_margin=a.attributed_margin or Decimal(0),
            freeze_quantity=a.freeze_quantity,
        )
        for a in group
    )
    unit = tuple(a.unit_lots or a.master_lots for a in group)
    master_units = group[0].master_lots // unit[0] if unit[0] else 0
    group_margin = sum((a.attributed_margin or Decimal(0) for a in group), Decimal(0))
    master_capital = group[0].master_capital or Decimal(0)
    if master_units <= 0 or group_margin <= 0 or master_capital <= 0:
        reason = "no margin figure for the master's order (ΔU did not rise and no calculator estimate)"
        return [_skip(a, c.pk, "no_margin_figure", reason) for c in eligible_child_rows() for a in group]
    plan = GroupPlan(
        legs=legs,
        attribution=Attribution(
            group_margin,
            MarginSource(group[0].margin_source or "delta_u"),
            group[0].reason,
            tuple(a.attributed_margin or Decimal(0) for a in group),
        ),
        master_capital=master_capital,
        # Unrounded (the stored `fraction` is for display): rounding happens once, at whole lots.
        fraction=group_margin / master_capital,
        unit_lots=unit,
        master_units=master_units,
        margin_per_unit=group_margin / master_units,
    )
    children = eligible_child_rows()
    max_age = timedelta(seconds=settings.CHILD_SNAPSHOT_MAX_AGE)
    now = timezone.now()
    verdicts = {c.pk: _entry_verdict(c, engine) for c in children}

    def sizable(c: ChildRow) -> bool:
        v = verdicts[c.pk]
        return v.send or v.dry_run

    stale = [c.pk for c in children if sizable(c) and (c.snap_at is None or now - c.snap_at > max_age)]
    if stale:
        accounts = list(Account.objects.filter(pk__in=stale).defer(*Account.SECRET_FIELDS))
        fresh = refresh_child_margins(accounts, clients=replicator.clients, fanout=replicator.fanout)
        statuses = dict(Account.objects.filter(pk__in=stale).values_list("pk", "status"))
        for i, c in enumerate(children):
            if c.pk in fresh:
                snap = fresh[c.pk]
                children[i] = c._replace(snap_used=snap.used_margin, snap_available=snap.available_margin)
            elif c.pk in statuses and statuses[c.pk] != c.status:  # e.g. the read found the token dead
                children[i] = c._replace(status=statuses[c.pk])
                verdicts[c.pk] = _entry_verdict(children[i], engine)
    held_instruments: dict[int, set[str]] = defaultdict(set)
    if any(c.max_open_positions is not None for c in children):
        limited = [c.pk for c in children if c.max_open_positions is not None]
        for (cid, ex, sym, _prod), (held, _, _) in replicated_positions(children=limited).items():
            if held:
                held_instruments[cid].add(f"{ex}:{sym}")
    day_pnl = _day_pnl([c for c in children if c.daily_loss_limit is not None and sizable(c)], replicator)
    unit_margin = (
        _preflight(plan, [c for c in children if sizable(c)], replicator)
        if settings.CHILD_MARGIN_PREFLIGHT
        else {}
    )
    rows: list[IntentRow] = []
    for c in children:
        verdict = verdicts[c.pk]
        if not sizable(c):
            rows.extend(_skip(a, c.pk, verdict.code, verdict.reason) for a in group)
            continue
        if c.daily_loss_limit is not None and day_pnl.get(c.pk) is None:
            reason = (
                "today's loss on the replicated positions could not be measured (positions or prices "
                "unreadable): no new entry while a daily loss limit is set"
            )
            rows.extend(_skip(a, c.pk, "loss_unmeasurable", reason) for a in group)
            continue
        profile = ChildProfile(
            child_id=c.pk,
            capital_mode=CapitalMode(c.capital_mode),
            used=c.snap_used,
            available=c.snap_available,
            fixed_capital=c.fixed_capital,
            multiplier=c.multiplier,
            limits=_limits(c) if _has_limits(c) else ChildLimits(),
            open_instruments=frozenset(held_instruments.get(c.pk, ())),
            day_pnl=day_pnl.get(c.pk) or Decimal(0),
            margin_per_unit=unit_margin.get(c.pk),
        )
        try:
            entry = size_entry(plan, profile)
        except (ValueError, ArithmeticError) as exc:  # one child's bad figures never stop the others
            logger.warning("sizing child %s failed: %s", c.pk, exc)
            rows.extend(_skip(a, c.pk, "sizing_error", f"could not be sized: {exc}") for a in group)
            continue
        rows.extend(_entry_mappings(group, c.pk, entry, dry=verdict.dry_run))
    return rows


def _has_limits(c: ChildRow) -> bool:
    return bool(
        c.allowed_instruments
        or c.blocked_instruments
        or c.allowed_products
        or c.max_lots_per_order
        or c.max_quantity
        or c.max_order_value
        or c.max_open_positions is not None
        or c.daily_loss_limit is not None
    )


def _entry_mappings(group: Sequence[Allocation], c: int, entry: ChildEntry, *, dry: bool) -> list[IntentRow]:
    if entry.units <= 0:
        return [
            _skip(a, c, entry.reason.value, entry.message, capital=entry.capital, target=entry.target_margin)
            for a in group
        ]
    out = []
    for a, order in zip(group, entry.orders, strict=True):
        for slice_no, qty in enumerate(order.slices):
            out.append(
                intent_row(
                    a,
                    c,
                    slice_no=slice_no,
                    side=a.side,
                    lots=qty // a.lot_size,
                    quantity=qty,
                    status=MappingStatus.DRY_RUN if dry else MappingStatus.PLANNED,
                    reason_code=entry.reason.value if entry.caps_hit else "",
                    reason=entry.message if entry.caps_hit else ("dry run: not sent" if dry else ""),
                    capital=entry.capital,
                    target=entry.target_margin,
                )
            )
    return out


def _exit_rows(
    group: Sequence[Allocation], engine: Switches, replicator: Replicator
) -> tuple[list[IntentRow], set[Key]]:
    """Exits by entitlement (DESIGN §3.7): the exit rule moves each child's E, and the exit sent
    is what the child holds beyond its new E less the exits already working (never more than it
    holds). A child that cannot trade now gets a SKIPPED row saying why; its exit stays owed."""
    instruments = {(a.exchange, a.tradingsymbol, a.product) for a in group}
    hold = holdings(instruments)
    rows: list[IntentRow] = []
    followed: set[Key] = set()
    for a in group:
        inst = (a.exchange, a.tradingsymbol, a.product)
        after = entitled([inst], upto=a.pk)
        before = entitled([inst], upto=a.pk - 1)
        keys = sorted({k for k in hold if k[1:] == inst} | set(after) | set(before))
        followed.update(keys)
        accounts = {
            acc.pk: acc
            for acc in Account.objects.filter(pk__in={k[0] for k in keys}).defer(*Account.SECRET_FIELDS)
        }
        price = (
            exit_price(a, replicator.clients)
            if any(acc.max_order_value is not None for acc in accounts.values())
            else None
        )
        for key in keys:
            child = accounts.get(key[0])
            if child is None or child.role == Role.MASTER:
                continue
            verdict = decide(Action.EXIT, engine, switches_of(child))
            h = hold.get(key, NO_HOLDING)
            owed = owed_exit(after.get(key, 0), h, dry_run=verdict.dry_run)
            if owed is None or owed[0] != a.side:
                e = before.get(key, 0)
                if e and e == after.get(key, 0) and h.held:
                    lots = abs(e) // max(a.lot_size, 1)
                    rows.append(
                        _skip(a, key[0], "below_one_unit", f"the exit ratio of {lots} lots rounds to zero")
                    )
                continue
            quantity = owed[1]
            if not verdict.send and not verdict.dry_run:
                rows.append(
                    _skip(
                        a,
                        key[0],
                        verdict.code,
                        f"exit of {quantity} held back: {verdict.reason}; it stays owed until the "
                        "child can trade",
                    )
                )
                continue
            slices = exit_slices(quantity, max(a.lot_size, 1), a.freeze_quantity, child, price)
            for slice_no, qty in enumerate(slices):
                rows.append(
                    intent_row(
                        a,
                        key[0],
                        slice_no=slice_no,
                        side=a.side,
                        lots=qty // max(a.lot_size, 1),
                        quantity=qty,
                        status=MappingStatus.DRY_RUN if verdict.dry_run else MappingStatus.PLANNED,
                        reason=verdict.reason if verdict.dry_run else "",
                        reason_code="",
                    )
                )
    return rows, followed


def exit_slices(
    quantity: int, lot_size: int, freeze_quantity: int | None, child: Account, price: Decimal | None
) -> tuple[int, ...]:
    """An exit is never reduced by a child's caps (exits continue), but no single order may be
    above them: it goes out in whole-lot slices within the freeze quantity, max lots per order,
    max quantity and max order value (priced at `price`, the LTP for MARKET) — DESIGN §3.7."""
    per_order: list[int] = [freeze_quantity] if freeze_quantity else []
    # A cap below one lot cannot stop an exit: such a child exits one lot per order.
    if child.max_lots_per_order is not None:
        per_order.append(max(child.max_lots_per_order, 1) * lot_size)
    if child.max_quantity is not None:
        per_order.append(max(child.max_quantity // lot_size, 1) * lot_size)
    if child.max_order_value is not None and price:
        per_order.append(max(int(child.max_order_value // (price * lot_size)), 1) * lot_size)
    return slice_quantity(quantity, lot_size, min(per_order) if per_order else None)


def exit_price(a: Allocation, clients: ClientCache) -> Decimal | None:
    """The price an exit's order value is judged at: its own price, else the LTP (the master's
    broker), else the last average fill price the engine saw there."""
    if a.reference_price or a.price:
        return a.reference_price or a.price
    try:
        master = Account.objects.defer(*Account.SECRET_FIELDS).get(pk=a.master_id)
        quote = clients.get(master).ltp([InstrumentKey(a.exchange, a.tradingsymbol)])
        found = quote.get(InstrumentKey(a.exchange, a.tradingsymbol))
        if found:
            return Decimal(found)
    except Exception as exc:  # noqa: BLE001 — no quote: fall back to the last fill price
        logger.warning("LTP for %s:%s unavailable: %s", a.exchange, a.tradingsymbol, exc)
    last = (
        OrderMapping.objects.filter(exchange=a.exchange, tradingsymbol=a.tradingsymbol, average_price__gt=0)
        .order_by("-id")
        .values_list("average_price", flat=True)
        .first()
    )
    return last


@dataclass(slots=True)
class IntentRow:
    """One OrderMapping row about to be inserted (attribute names are the table's columns)."""

    allocation_id: int
    child_id: int
    slice_no: int
    tag: str
    status: str
    exchange: str
    tradingsymbol: str
    product: str
    side: str
    order_type: str
    validity: str
    price: Decimal
    trigger_price: Decimal
    lots: int
    quantity: int
    capital: Decimal | None
    target_margin: Decimal | None
    reason_code: str
    reason: str
    finished_at: datetime | None
    wave: int = 0
    epoch: int = 0
    broker_order_id: str = ""
    broker_status: str = ""
    filled_quantity: int = 0
    average_price: Decimal = Decimal("0")
    attempts: int = 0
    sent_at: datetime | None = None
    acked_at: datetime | None = None
    latency_ms: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def intent_row(
    a: Allocation,
    child_id: int,
    *,
    slice_no: int,
    side: str,
    lots: int,
    quantity: int,
    status: str,
    reason_code: str = "",
    reason: str = "",
    capital: Decimal | None = None,
    target: Decimal | None = None,
) -> IntentRow:
    return IntentRow(
        allocation_id=a.pk,
        child_id=child_id,
        slice_no=slice_no,
        tag=make_tag(a.pk, child_id, slice_no),
        status=status,
        exchange=a.exchange,
        tradingsymbol=a.tradingsymbol,
        product=a.product,
        side=side,
        order_type=a.order_type,
        validity=a.validity,
        price=a.price,
        trigger_price=a.trigger_price,
        lots=lots,
        quantity=quantity,
        capital=_money(capital),
        target_margin=_unrounded(target),
        reason_code=reason_code,
        reason=reason,
        finished_at=timezone.now() if status in (MappingStatus.SKIPPED, MappingStatus.DRY_RUN) else None,
    )


def _skip(
    a: Allocation,
    child_id: int,
    code: str,
    reason: str,
    *,
    capital: Decimal | None = None,
    target: Decimal | None = None,
) -> IntentRow:
    return intent_row(
        a,
        child_id,
        slice_no=0,
        side=a.side,
        lots=0,
        quantity=0,
        status=MappingStatus.SKIPPED,
        reason_code=code,
        reason=reason,
        capital=capital,
        target=target,
    )


def _unrounded(v: Decimal | None) -> Decimal | None:
    """The child's target as computed (f × C × multiplier), to the column's 10 places: rounding
    happens once, at whole lots, never to the stored figure."""
    return None if v is None else v.quantize(Decimal("1E-10"))


def _money(v: Decimal | None) -> Decimal | None:
    return None if v is None else v.quantize(Decimal("0.01"))


def _accounts(rows: Sequence[ChildRow]) -> list[Account]:
    """Model instances (credentials deferred) for the few children that need a broker read."""
    if not rows:
        return []
    return list(Account.objects.filter(pk__in=[r.pk for r in rows]).defer(*Account.SECRET_FIELDS))


def _day_pnl(rows: Sequence[ChildRow], replicator: Replicator) -> dict[int, Decimal | None]:
    """Today's P&L of the replicated positions per child with a daily loss limit; None where it
    could not be measured (the caller then blocks the entry: a loss limit fails closed)."""
    children = _accounts(rows)
    if not children:
        return {}
    return replicated_day_pnl(
        children, clients=replicator.clients, fanout=replicator.fanout, now=timezone.now()
    )


def _preflight(plan: GroupPlan, rows: Sequence[ChildRow], replicator: Replicator) -> dict[int, Decimal]:
    """Margin of one unit in each child's own account (its positions and hedges): one call per child."""
    children = _accounts(rows)

    def read(c: Account) -> list[Any]:
        reqs = [
            OrderRequest(
                leg.exchange,
                leg.tradingsymbol,
                Side(leg.side),
                unit * leg.lot_size,
                Product(leg.product),
                OrderType.MARKET,
            )
            for leg, unit in zip(plan.legs, plan.unit_lots, strict=True)
        ]
        try:
            return [(c.pk, replicator.clients.get(c).basket_margin(reqs).total)]
        except Exception as exc:  # noqa: BLE001 — one child's failed read falls back to the master's figure
            logger.warning("basket margin for child %s unavailable: %s", c.pk, exc)
            return []

    return {k: v for k, v in replicator.fanout.map(read, list(children)) if v > 0}
