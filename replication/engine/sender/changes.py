"""Changes to open child orders (the master modified or cancelled, or policy made them MARKET)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from brokers.errors import (
    BrokerError,
)
from brokers.types import OrderType
from replication.engine.sender.lookup import LookUp
from replication.engine.sender.outcomes import Outcome
from replication.gate import Action, Switches, Verdict, child_switches, decide
from replication.models import (
    MappingStatus,
    OrderMapping,
)
from replication.ratelimit import BudgetExhausted
from replication.services.outcomes import outcomes_modified

logger = logging.getLogger(__name__)


class OpenOrderChanges(LookUp):
    """Modifications and cancellations of open child orders, each through the send gate."""

    def _gate(self, mappings: Iterable[OrderMapping], action: Action) -> dict[int, Verdict]:
        """The send gate for modifications and cancels of these mappings, read now, per child."""
        engine = Switches.read()
        children = child_switches({m.child_id for m in mappings})
        return {cid: decide(action, engine, sw) for cid, sw in children.items()}

    def cancel_open(self, mappings: Sequence[OrderMapping], *, reason: str) -> int:
        """Cancel the open remainder of child orders at their brokers, then refresh them."""
        targets = [m for m in mappings if m.status == MappingStatus.OPEN and m.broker_order_id]
        gate = self._gate(targets, Action.CANCEL)
        by_child: dict[int, list[OrderMapping]] = defaultdict(list)
        held: list[Outcome] = []
        for m in targets:
            verdict = gate.get(m.child_id)
            if verdict is not None and verdict.send:
                by_child[m.child_id].append(m)
            else:
                why = verdict.reason if verdict else "the account no longer exists"
                held.append(Outcome(m.pk, m.status, event="cancel_held", reason=f"{reason}; not sent: {why}"))

        def cancel_child(items: list[OrderMapping]) -> list[Outcome]:
            out = []
            try:
                client = self.clients.get(items[0].child)
            except Exception as exc:  # noqa: BLE001 — one child's unreadable credentials never stop the rest
                return [Outcome(m.pk, m.status, event="cancel_failed", reason=str(exc)[:500]) for m in items]
            limiter = self.limiters.for_account(items[0].child_id, items[0].child.broker)
            for m in items:
                try:
                    limiter.acquire()
                    client.cancel_order(m.broker_order_id)
                    out.append(Outcome(m.pk, m.status, event="cancel_sent", reason=reason))
                except (BrokerError, BudgetExhausted) as exc:
                    out.append(Outcome(m.pk, m.status, event="cancel_failed", reason=str(exc)))
            return out

        outcomes = held + self._map(cancel_child, list(by_child.values()))
        self._write_events(outcomes, {m.pk: m for m in targets})
        if by_child:
            self.follow_up(children=by_child.keys(), recover=False)
        return sum(len(v) for v in by_child.values())

    def modify_open(self, changes: Sequence[tuple[OrderMapping, dict[str, Any]]], *, reason: str) -> int:
        """Send modifications (price, trigger, quantity, or order type MARKET) for open child orders."""
        by_child: dict[int, list[tuple[OrderMapping, dict[str, Any]]]] = defaultdict(list)
        live = [(m, kwargs) for m, kwargs in changes if m.status == MappingStatus.OPEN and m.broker_order_id]
        gate = self._gate([m for m, _ in live], Action.MODIFY)
        held: list[Outcome] = []
        for m, kwargs in live:
            verdict = gate.get(m.child_id)
            if verdict is not None and verdict.send:
                by_child[m.child_id].append((m, kwargs))
            else:
                why = verdict.reason if verdict else "the account no longer exists"
                held.append(Outcome(m.pk, m.status, event="modify_held", reason=f"{reason}; not sent: {why}"))

        def modify_child(items: list[tuple[OrderMapping, dict[str, Any]]]) -> list[Outcome]:
            try:
                client = self.clients.get(items[0][0].child)
            except Exception as exc:  # noqa: BLE001 — one child's unreadable credentials never stop the rest
                return [
                    Outcome(m.pk, m.status, event="modify_failed", reason=str(exc)[:500]) for m, _ in items
                ]
            limiter = self.limiters.for_account(items[0][0].child_id, items[0][0].child.broker)
            out = []
            for m, kwargs in items:
                try:
                    limiter.acquire()
                    client.modify_order(m.broker_order_id, **kwargs)
                    out.append(Outcome(m.pk, m.status, event="modify_sent", reason=reason))
                except (BrokerError, BudgetExhausted) as exc:
                    out.append(Outcome(m.pk, m.status, event="modify_failed", reason=str(exc)))
            return out

        outcomes = held + self._map(modify_child, list(by_child.values()))
        pairs = {m.pk: (m, kw) for m, kw in live}
        sent = [o for o in outcomes if o.event == "modify_sent"]
        updates = []
        for o in sent:
            m, kwargs = pairs[o.mapping_id]
            if "price" in kwargs and kwargs["price"] is not None:
                m.price = kwargs["price"]
            if "trigger_price" in kwargs and kwargs["trigger_price"] is not None:
                m.trigger_price = kwargs["trigger_price"]
            if "quantity" in kwargs and kwargs["quantity"] is not None:
                m.quantity = kwargs["quantity"]
                # The lots follow: a later change of the master's order scales from them (a copy
                # cut to what the child holds must not grow back when the master moves a trigger).
                m.lots = m.quantity // max(m.allocation.lot_size, 1)
            if kwargs.get("order_type") == OrderType.MARKET:
                m.order_type, m.price, m.trigger_price = OrderType.MARKET, Decimal(0), Decimal(0)
            elif kwargs.get("order_type") == OrderType.SLM:
                m.order_type, m.price = OrderType.SLM, Decimal(0)
            updates.append(m)
        outcomes_modified(
            lease=self.lease,
            mappings=updates,
            events=self._audit_rows_for(outcomes, {m.pk: m for m, _ in pairs.values()}),
        )
        if by_child:
            self.follow_up(children=by_child.keys(), recover=False)
        return len(sent)
