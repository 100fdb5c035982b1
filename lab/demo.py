"""A scripted paper session of DESIGN §3.6, run tick by tick, with the expected result of every step.

Used by `manage.py demo` (on a throwaway database) and by the engine's tests (same desk). Also
`demo_desk_reset`: the seeded demo desk of `make run` back to its starting state (`manage.py
demo_reset`, `make demo-reset`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, CapitalMode, Ownership, Role
from accounts.services import account_set_status
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument, PaperOrder, PaperPosition
from brokers.paper.services import (
    paper_account_open,
    paper_account_set_cash,
    paper_order_cancel,
    paper_order_modify,
    paper_order_place,
)
from replication.models import (
    Allocation,
    Entitlement,
    EventKind,
    MappingStatus,
    MarginSnapshot,
    MasterOrder,
    MasterPosition,
    OrchestratorLease,
    OrderMapping,
)
from replication.orchestrator import Orchestrator
from replication.services import audit

FUT = "NIFTY25DECFUT"
CALL = "NIFTY25DEC20000CE"
PUT = "NIFTY25DEC20000PE"
MASTER = "MASTER"
# Far ahead: the paper exchange refuses orders in a contract that has expired (issue 11 defect 13).
EXPIRY = date(2099, 12, 29)

# name: (paper cash, capital mode, fixed capital, multiplier) — the children of DESIGN §3.6
CHILDREN: dict[str, tuple[Decimal, CapitalMode, Decimal | None, Decimal]] = {
    "C1": (Decimal("500000"), CapitalMode.TOTAL, None, Decimal("1")),
    "C2": (Decimal("2000000"), CapitalMode.TOTAL, None, Decimal("1")),
    "C3": (Decimal("250000"), CapitalMode.TOTAL, None, Decimal("1")),
    "C4": (Decimal("3000000"), CapitalMode.FIXED, Decimal("1000000"), Decimal("0.5")),
    "C5": (Decimal("700000"), CapitalMode.TOTAL, None, Decimal("1")),
}


@dataclass
class Desk:
    master: Account
    children: dict[str, Account]

    def place(
        self,
        side: str,
        symbol: str,
        quantity: int,
        *,
        user: str = MASTER,
        order_type: str = "MARKET",
        price: Decimal | None = None,
        trigger: Decimal | None = None,
        product: str = "NRML",
    ) -> str:
        return paper_order_place(
            user_id=user,
            exchange="NFO",
            tradingsymbol=symbol,
            side=side,
            quantity=quantity,
            product=product,
            order_type=order_type,
            price=price,
            trigger_price=trigger,
        ).order_id

    def positions(self, symbol: str) -> dict[str, int]:
        held = dict.fromkeys(self.children, 0)
        for user_id, qty in PaperPosition.objects.filter(
            account__user_id__in=list(self.children), instrument__tradingsymbol=symbol
        ).values_list("account__user_id", "quantity"):
            held[user_id] += qty
        return held


def _instrument(
    symbol: str,
    kind: str,
    price: str,
    *,
    exchange: str = "NFO",
    segment: str = "NFO-FUT",
    lot: int = 75,
    strike: str = "0",
    freeze: int | None = 1800,
    token: int = 0,
) -> None:
    PaperInstrument.objects.update_or_create(
        exchange=exchange,
        tradingsymbol=symbol,
        defaults={
            "instrument_token": token,
            "name": "NIFTY",
            "underlying": "NIFTY",
            "instrument_type": kind,
            "segment": segment,
            "lot_size": lot,
            "expiry": EXPIRY if kind != InstrumentType.INDEX else None,
            "strike": Decimal(strike),
            "last_price": Decimal(price),
            "freeze_quantity": freeze,
        },
    )


def build_desk() -> Desk:
    """NIFTY at 20,000 (future lot 75, 10% margin: ₹1,50,000 a lot), the 20000 call at 200; the
    master with ₹10,00,000 and the five children of the worked example, all with consent."""
    _instrument(
        "NIFTY 50",
        InstrumentType.INDEX,
        "20000",
        exchange="NSE",
        segment="INDICES",
        lot=0,
        freeze=None,
        token=256265,
    )
    _instrument(FUT, InstrumentType.FUT, "20000", token=900001)
    _instrument(CALL, InstrumentType.CE, "200", segment="NFO-OPT", strike="20000", token=900002)
    _instrument(PUT, InstrumentType.PE, "150", segment="NFO-OPT", strike="20000", token=900003)
    now = timezone.now()
    PaperAccount.objects.get_or_create(user_id=MASTER, defaults={"cash": Decimal("1000000")})
    master, _ = Account.objects.get_or_create(
        broker="paper",
        broker_user_id=MASTER,
        defaults={
            "role": Role.MASTER,
            "display_name": "Master",
            "consent_given_at": now,
            "consent_version": "demo",
        },
    )
    children = {}
    for name, (cash, mode, fixed, mult) in CHILDREN.items():
        PaperAccount.objects.get_or_create(user_id=name, defaults={"cash": cash})
        children[name], _ = Account.objects.get_or_create(
            broker="paper",
            broker_user_id=name,
            defaults={
                "role": Role.CHILD,
                "display_name": name,
                "capital_mode": mode,
                "fixed_capital": fixed,
                "multiplier": mult,
                "consent_given_at": now,
                "consent_version": "demo",
            },
        )
    return Desk(master, children)


@dataclass
class Step:
    title: str
    action: Callable[[Desk], None]
    symbol: str
    expected: dict[str, int]  # child position in `symbol` after the step
    also: dict[str, dict[str, int]] = field(default_factory=dict)  # other symbols to check


@dataclass
class StepResult:
    step: Step
    rows: list[tuple[str, int, int, int, int]]  # child, expected held, placed this step, filled, held
    ok: bool
    errors: list[str]


def script() -> list[Step]:
    flat = dict.fromkeys(CHILDREN, 0)
    state: dict[str, str] = {}

    def buy_two(d: Desk) -> None:
        d.place("BUY", FUT, 150)

    def sell_one(d: Desk) -> None:
        d.place("SELL", FUT, 75)

    def hedge(d: Desk) -> None:
        d.place("BUY", CALL, 150)
        d.place("SELL", FUT, 150)

    def limit_place(d: Desk) -> None:
        state["limit"] = d.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19000"))

    def limit_modify(d: Desk) -> None:
        paper_order_modify(user_id=MASTER, order_id=state["limit"], price=Decimal("19100"))

    def limit_cancel(d: Desk) -> None:
        paper_order_cancel(user_id=MASTER, order_id=state["limit"])

    return [
        Step(
            "master BUY 2 lots NIFTY future (f = 0.30)",
            buy_two,
            FUT,
            {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75},
        ),
        Step(
            "master SELL 1 lot (exit ratio 0.5)",
            sell_one,
            FUT,
            {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0},
        ),
        Step("master SELL the last lot (flat)", sell_one, FUT, flat),
        Step(
            "hedge: BUY 2 lots call + SELL 2 lots future (f = 0.12)",
            hedge,
            CALL,
            {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75},
            also={FUT: {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75}},
        ),
        Step(
            "master LIMIT BUY 1 lot at 19,000 (rests)",
            limit_place,
            FUT,
            {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75},
        ),
        Step(
            "master modifies the LIMIT to 19,100",
            limit_modify,
            FUT,
            {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75},
        ),
        Step(
            "master cancels the LIMIT",
            limit_cancel,
            FUT,
            {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75},
        ),
    ]


def run_script(desk: Desk, orchestrator: Orchestrator) -> list[StepResult]:
    orchestrator.run_tick()  # baseline snapshot of the master
    results = []
    for step in script():
        watermark = OrderMapping.objects.order_by("-id").values_list("id", flat=True).first() or 0
        step.action(desk)
        tick = orchestrator.run_tick()
        orchestrator.run_tick()  # follow-up tick: fills and order updates settle
        actual = desk.positions(step.symbol)
        rows = []
        for name, child in desk.children.items():
            mappings = OrderMapping.objects.filter(child=child, id__gt=watermark).exclude(
                status=MappingStatus.SKIPPED
            )
            placed = sum(m.quantity for m in mappings if m.status != MappingStatus.DRY_RUN)
            filled = sum(m.filled_quantity for m in mappings)
            rows.append((name, step.expected[name], placed, filled, actual[name]))
        ok = actual == step.expected and all(desk.positions(sym) == exp for sym, exp in step.also.items())
        results.append(StepResult(step, rows, ok, tick.errors))
    return results


def open_child_orders() -> int:
    return OrderMapping.objects.filter(status=MappingStatus.OPEN).count()


# --- Demo reset -------------------------------------------------------------------------------
# No service of replication/ deletes engine rows (the engine never does): the demo reset, a lab
# tool for a development database, deletes them here, in one transaction, with an audit row per
# account. The audit log itself is append-only and keeps its rows (their links become empty).

DEMO_RESET_ACTOR = "demo_reset"


class DemoResetRefused(Exception):
    """The reset would race a running engine."""


@dataclass(frozen=True)
class DemoResetResult:
    accounts: tuple[str, ...]  # broker user ids of the demo accounts found
    deleted: dict[str, int]  # what was deleted, by kind (only kinds with rows)
    cash: dict[str, Decimal]  # the paper cash each user id starts with again
    resumed: tuple[str, ...]  # accounts moved back to active


def demo_desk_reset(*, cash: Mapping[str, Decimal], now: datetime | None = None) -> DemoResetResult:
    """Put the demo desk of `cash` (broker user id -> starting paper cash) back to its start.

    For those user ids: the paper exchange's orders, trades and positions are deleted and the
    cash ledger is set back; the engine rows of their accounts (the master's orders, positions and
    allocations with every child order of them, the children's orders, entitlements and margin
    snapshots) are deleted; paused or halted paper accounts are resumed (breaker cleared).
    Other accounts' rows stay (a child order of a demo master's allocation goes with it). Refused
    while an engine holds a live lease: stop `make run` first.
    """
    now = now or timezone.now()
    live = OrchestratorLease.objects.filter(expires_at__gt=now).exclude(holder="").first()
    if live is not None:
        raise DemoResetRefused(
            f"the engine {live.holder} is running (its lease runs until {live.expires_at:%H:%M:%S} UTC): "
            "stop `make run` first"
        )
    user_ids = list(cash)
    deleted: dict[str, int] = {}

    def count(kind: str, number: int) -> None:
        if number:
            deleted[kind] = deleted.get(kind, 0) + number

    with transaction.atomic():
        accounts = list(
            Account.objects.filter(broker_user_id__in=user_ids)
            .exclude(ownership=Ownership.PENDING)
            .order_by("pk")
        )
        ids = [account.pk for account in accounts]
        count(
            "child orders",
            OrderMapping.objects.filter(Q(child_id__in=ids) | Q(allocation__master_id__in=ids))
            .delete()[1]
            .get(OrderMapping._meta.label, 0),
        )
        count(
            "allocations",
            Allocation.objects.filter(master_id__in=ids).delete()[1].get(Allocation._meta.label, 0),
        )
        count("master orders", MasterOrder.objects.filter(account_id__in=ids).delete()[0])
        count("master positions", MasterPosition.objects.filter(account_id__in=ids).delete()[0])
        count("entitlements", Entitlement.objects.filter(child_id__in=ids).delete()[0])
        count("margin snapshots", MarginSnapshot.objects.filter(account_id__in=ids).delete()[0])
        count("paper positions", PaperPosition.objects.filter(account__user_id__in=user_ids).delete()[0])
        count(
            "paper orders",
            PaperOrder.objects.filter(account__user_id__in=user_ids)
            .delete()[1]
            .get(PaperOrder._meta.label, 0),
        )
        for user_id, amount in cash.items():
            paper_account_open(user_id=user_id, cash=amount)
            paper_account_set_cash(user_id=user_id, cash=amount)
        resumed = []
        for account in accounts:
            stuck = account.status in (AccountStatus.PAUSED, AccountStatus.HALTED)
            if account.broker == Broker.PAPER and stuck:  # resuming clears the breaker too
                account_set_status(
                    account=account, status=AccountStatus.ACTIVE, actor=DEMO_RESET_ACTOR, reason="demo reset"
                )
                resumed.append(account.broker_user_id)
        for account in accounts:
            audit(
                kind=EventKind.ACCOUNT_UPDATED,
                message="demo reset: paper book, cash and engine rows back to the start",
                actor=DEMO_RESET_ACTOR,
                data={"deleted": deleted, "cash": str(cash.get(account.broker_user_id, ""))},
                account=account,
            )
    return DemoResetResult(
        accounts=tuple(a.broker_user_id for a in accounts),
        deleted=deleted,
        cash={user_id: Decimal(amount) for user_id, amount in cash.items()},
        resumed=tuple(resumed),
    )
