"""Entries: every eligible child sized by the rules of DESIGN §3.3 (`replication.sizing`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import Account, Role
from brokers.types import OrderRequest, OrderType, Product, Side
from replication.allocation.children import (
    ChildRow,
    accounts_of,
    child_limits,
    eligible_child_rows,
    has_limits,
    refresh_child_margins,
)
from replication.allocation.intents import IntentRow, intent_row, skip_row
from replication.allocation.positions import replicated_positions
from replication.clients import ClientCache
from replication.daypnl import replicated_day_pnl
from replication.fanout import FanOut
from replication.gate import Action, ChildSwitches, Switches, Verdict, decide
from replication.models import Allocation, EngineControl, MappingStatus
from replication.sizing import (
    CapitalMode,
    ChildEntry,
    ChildLimits,
    ChildProfile,
    GroupPlan,
    group_plan,
    size_entry,
)

logger = logging.getLogger(__name__)


def entry_verdict(child: ChildRow, engine: Switches) -> Verdict:
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


def entry_rows(
    group: Sequence[Allocation],
    control: EngineControl,
    engine: Switches,
    *,
    clients: ClientCache,
    pool: FanOut,
    children: list[ChildRow] | None = None,
) -> list[IntentRow]:
    """Every eligible child's intents for an opening group (`children`: these children only)."""
    if children is None:
        children = eligible_child_rows()
    plan = group_plan([a.sizing_plan() for a in group])
    if plan is None:
        reason = "no margin figure for the master's order (ΔU did not rise and no calculator estimate)"
        return [skip_row(a, c.pk, "no_margin_figure", reason) for c in children for a in group]
    max_age = timedelta(seconds=settings.CHILD_SNAPSHOT_MAX_AGE)
    now = timezone.now()
    verdicts = {c.pk: entry_verdict(c, engine) for c in children}

    def sizable(c: ChildRow) -> bool:
        v = verdicts[c.pk]
        return v.send or v.dry_run

    stale = [c.pk for c in children if sizable(c) and (c.snap_at is None or now - c.snap_at > max_age)]
    if stale:
        accounts = list(Account.objects.filter(pk__in=stale).defer(*Account.SECRET_FIELDS))
        fresh = refresh_child_margins(accounts, clients=clients, fanout=pool)
        statuses = dict(Account.objects.filter(pk__in=stale).values_list("pk", "status"))
        for i, c in enumerate(children):
            if c.pk in fresh:
                snap = fresh[c.pk]
                children[i] = c._replace(snap_used=snap.used_margin, snap_available=snap.available_margin)
            elif c.pk in statuses and statuses[c.pk] != c.status:  # e.g. the read found the token dead
                children[i] = c._replace(status=statuses[c.pk])
                verdicts[c.pk] = entry_verdict(children[i], engine)
    held_instruments: dict[int, set[str]] = defaultdict(set)
    if any(c.max_open_positions is not None for c in children):
        limited = [c.pk for c in children if c.max_open_positions is not None]
        for (cid, ex, sym, _prod), (held, _, _) in replicated_positions(children=limited).items():
            if held:
                held_instruments[cid].add(f"{ex}:{sym}")
    day_pnl = children_day_pnl(
        [c for c in children if c.daily_loss_limit is not None and sizable(c)], clients=clients, pool=pool
    )
    unit_margin = (
        preflight_unit_margins(plan, [c for c in children if sizable(c)], clients=clients, pool=pool)
        if settings.CHILD_MARGIN_PREFLIGHT
        else {}
    )
    rows: list[IntentRow] = []
    for c in children:
        verdict = verdicts[c.pk]
        if not sizable(c):
            rows.extend(skip_row(a, c.pk, verdict.code, verdict.reason) for a in group)
            continue
        if c.daily_loss_limit is not None and day_pnl.get(c.pk) is None:
            reason = (
                "today's loss on the replicated positions could not be measured (positions or prices "
                "unreadable): no new entry while a daily loss limit is set"
            )
            rows.extend(skip_row(a, c.pk, "loss_unmeasurable", reason) for a in group)
            continue
        profile = ChildProfile(
            child_id=c.pk,
            capital_mode=CapitalMode(c.capital_mode),
            used=c.snap_used,
            available=c.snap_available,
            fixed_capital=c.fixed_capital,
            multiplier=c.multiplier,
            limits=child_limits(c) if has_limits(c) else ChildLimits(),
            open_instruments=frozenset(held_instruments.get(c.pk, ())),
            day_pnl=day_pnl.get(c.pk) or Decimal(0),
            margin_per_unit=unit_margin.get(c.pk),
        )
        try:
            entry = size_entry(plan, profile)
        except (ValueError, ArithmeticError) as exc:  # one child's bad figures never stop the others
            logger.warning("sizing child %s failed: %s", c.pk, exc)
            rows.extend(skip_row(a, c.pk, "sizing_error", f"could not be sized: {exc}") for a in group)
            continue
        rows.extend(entry_mappings(group, c.pk, entry, dry=verdict.dry_run))
    return rows


def entry_mappings(group: Sequence[Allocation], c: int, entry: ChildEntry, *, dry: bool) -> list[IntentRow]:
    if entry.units <= 0:
        return [
            skip_row(
                a, c, entry.reason.value, entry.message, capital=entry.capital, target=entry.target_margin
            )
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


def children_day_pnl(
    rows: Sequence[ChildRow], *, clients: ClientCache, pool: FanOut
) -> dict[int, Decimal | None]:
    """Today's P&L of the replicated positions per child with a daily loss limit; None where it
    could not be measured (the caller then blocks the entry: a loss limit fails closed)."""
    children = accounts_of(rows)
    if not children:
        return {}
    return replicated_day_pnl(children, clients=clients, fanout=pool, now=timezone.now())


def preflight_unit_margins(
    plan: GroupPlan, rows: Sequence[ChildRow], *, clients: ClientCache, pool: FanOut
) -> dict[int, Decimal]:
    """Margin of one unit in each child's own account (its positions and hedges): one call per child."""
    children = accounts_of(rows)

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
            return [(c.pk, clients.get(c).basket_margin(reqs).total)]
        except Exception as exc:  # noqa: BLE001 — one child's failed read falls back to the master's figure
            logger.warning("basket margin for child %s unavailable: %s", c.pk, exc)
            return []

    return {k: v for k, v in pool.map(read, list(children)) if v > 0}
