"""Exits: cancel what the master no longer holds, then exits by entitlement (DESIGN §3.4, §3.7)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q

from accounts.models import Account, Role
from brokers.types import InstrumentKey
from replication import sizing
from replication.allocation.intents import IntentRow, intent_row, skip_row
from replication.allocation.positions import PENDING
from replication.clients import CHILD_SECRETS, ClientCache
from replication.entitlement import NO_HOLDING, Key, entitled, exit_resting, holdings, owed_exit
from replication.gate import Action, Switches, decide, in_dry_run, switches_of
from replication.models import Allocation, AllocationKind, MappingStatus, OrderMapping

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InFlight:
    """What is in flight where exits are about to be sized (DESIGN §3.4): entries of instruments
    the master went flat in, by an exit it made and not one still resting (still PLANNED: withdraw
    them; OPEN: cancel them, a late fill must not leave the child holding), and every child with an
    order pending there (follow it up first)."""

    withdraw: list[OrderMapping]
    cancel: list[OrderMapping]
    children: set[int]


def in_flight(closes: Sequence[Allocation]) -> InFlight:
    """Before exits are sized: the open entries where the master went flat, and whose fills to refresh."""
    instruments = {(a.exchange, a.tradingsymbol, a.product) for a in closes}
    # Flat only by an exit the master has made: a stop-loss resting on the whole position leaves
    # the master holding, and its resting entries (copied by the children) working.
    flat = {
        (a.exchange, a.tradingsymbol, a.product) for a in closes if a.exit_ratio == 1 and not exit_resting(a)
    }
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
    return InFlight(
        withdraw=[m for m in entries if m.status == MappingStatus.PLANNED],
        cancel=[m for m in entries if m.status == MappingStatus.OPEN],
        children={m.child_id for m in open_here},
    )


def exit_rows(
    group: Sequence[Allocation], engine: Switches, clients: ClientCache
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
        # A resting exit (a stop-loss, a target) gets resting copies sized against the E its own
        # and the master's other resting exits would leave; an exit the master has made is sized
        # against the exits it has made, whatever copies of resting ones the children have.
        made = not exit_resting(a)
        after = entitled([inst], upto=a.pk, resting_exits=not made)
        before = entitled([inst], upto=a.pk - 1, resting_exits=not made)
        keys = sorted({k for k in hold if k[1:] == inst} | set(after) | set(before))
        followed.update(keys)
        accounts = {
            acc.pk: acc
            for acc in Account.objects.filter(pk__in={k[0] for k in keys}).defer(*Account.SECRET_FIELDS)
        }
        price = (
            exit_price(a, clients)
            if any(acc.max_order_value is not None for acc in accounts.values())
            else None
        )
        for key in keys:
            child = accounts.get(key[0])
            if child is None or child.role == Role.MASTER:
                continue
            switches = switches_of(child)
            verdict = decide(Action.EXIT, engine, switches)
            h = hold.get(key, NO_HOLDING)
            owed = owed_exit(after.get(key, 0), h, dry_run=in_dry_run(engine, switches), made=made)
            if owed is None or owed[0] != a.side:
                e = before.get(key, 0)
                if e and e == after.get(key, 0) and h.held:
                    lots = abs(e) // max(a.lot_size, 1)
                    rows.append(
                        skip_row(a, key[0], "below_one_unit", f"the exit ratio of {lots} lots rounds to zero")
                    )
                continue
            quantity = owed[1]
            if not verdict.send and not verdict.dry_run:
                rows.append(
                    skip_row(
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
    limits = sizing.ChildLimits(
        max_lots_per_order=child.max_lots_per_order,
        max_quantity=child.max_quantity,
        max_order_value=child.max_order_value,
    )
    return sizing.exit_slices(quantity, lot_size, freeze_quantity, limits, price)


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
