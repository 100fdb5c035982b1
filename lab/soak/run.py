"""One soak session: the world, the loop of master events, faults and ticks, the quiet period, the verdict.

Everything runs in this process against the current database (the command gives it a throwaway
one): the Kite simulator serves on 127.0.0.1 in threads, the orchestrator sends through its own
pool, and the master trades on the paper exchange behind the simulator. "Fast clock": ticks run
back to back; the only waits are the simulator's own (latency, a timed-out answer) and, in the
quiet period, the engine's grace before it may call an unanswered order absent.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.test.utils import override_settings
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, CapitalMode, Role
from accounts.services import account_set_credentials, account_set_status
from brokers.kite.instruments import shared_cache
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument, PaperPosition
from lab.kite_sim.server import KiteSim, start
from lab.soak.chaos import LATE_BOOK_MAX_S, Chaos
from lab.soak.invariants import (
    IN_FLIGHT,
    Findings,
    check_invariants,
    master_flat_symbols,
    starved_exits,
)
from lab.soak.master import CALL, EXCHANGE, FUT, MASTER, PUT, MasterDesk
from replication import failpoints
from replication.failpoints import FailpointTriggered
from replication.models import Allocation, AllocationStatus, OrderMapping, ReplicationEvent
from replication.orchestrator import Orchestrator

FAR = datetime(2099, 1, 1, tzinfo=UTC)  # sessions of the soak never die of old age, only of faults
STAFF = "soak-staff"
# Far ahead: the paper exchange refuses orders in a contract that has expired (issue 11 defect 13).
EXPIRY = date(2099, 12, 29)
ERROR_STATUSES = frozenset({403, 429, 500, 502, 503, 504})
# What the engine did about the faults (ReplicationEvent kinds), shown with the figures.
RECOVERY_EVENTS = (
    "send_unknown",
    "found_by_tag",
    "recovered_unknown",
    "absent_resend",
    "send_deferred",
    "send_failed",
    "send_rejected",
    "account.login_needed",
    "breaker_tripped",
    "cancel_failed",
    "modify_failed",
)


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """What one session is. The engine may call an unanswered order absent (and send it again) only
    after `unknown_grace_s`; the simulator's worst delay before an order shows in its child's book
    is a slow write (answered 0.3 s after the client's timeout) into a late book (0.8 s): 2.1 s."""

    seed: int = 1
    events: int = 300
    children: int = 10
    fault_rate: float = 0.3
    workers: int = 8
    kite_timeout_s: float = 1.0  # the client's timeout (KITE_TIMEOUT_S)
    unknown_grace_s: float = 5.0  # UNKNOWN_GRACE_SECONDS: 2.1 s and room for a busy machine
    quiesce_timeout_s: float = 120.0
    # Issue 11: staff and RMS faults (halts, dry-run, disable, rejection after accept), child caps,
    # the master's stop-loss/target pairs, LIMIT -> MARKET, resizes and orders crossing zero; starved
    # exits counted `settle_ticks` ticks after faults cleared; the master flattens at the end.
    money: bool = True
    settle_ticks: int = 6

    def replay_command(self, *, settings_module: str = "") -> str:
        """The command line that runs this session again (same seed: same events and faults)."""
        env = f"DJANGO_SETTINGS_MODULE={settings_module} " if settings_module else ""
        return (
            f"{env}python manage.py soak --seed {self.seed} --events {self.events} "
            f"--children {self.children} --fault-rate {self.fault_rate} --workers {self.workers}"
        )


@dataclass(slots=True)
class SoakReport:
    config: SoakConfig
    events: int = 0
    event_kinds: Counter[str] = field(default_factory=Counter)
    master_orders: int = 0
    faults_injected: int = 0
    fault_kinds: Counter[str] = field(default_factory=Counter)
    fault_responses: int = 0  # error answers the simulator gave (403, 429, 5xx)
    crashes: int = 0  # ticks that died at an armed failpoint (a new orchestrator took over)
    relogins: int = 0
    breaker_resets: int = 0
    ticks: int = 0
    quiesce_ticks: int = 0
    engine: Counter[str] = field(default_factory=Counter)  # the engine's recovery events, by kind
    tick_outcomes: Counter[str] = field(default_factory=Counter)
    tick_errors: list[str] = field(default_factory=list)  # the first few, for the detail lines
    schedule: str = ""  # fingerprint of everything the seed decided
    wall_s: float = 0.0
    findings: Findings = field(default_factory=Findings)

    @property
    def ok(self) -> bool:
        return self.findings.ok

    def line(self) -> str:
        f = self.findings
        return (
            f"events={self.events} child_orders={f.child_orders} faults_injected={self.faults_injected} "
            f"duplicates={len(f.duplicates)} lost={len(f.lost)} orphans={len(f.orphans)} "
            f"unsettled={len(f.unsettled)} drift={len(f.drift)} starved={len(f.starved)} "
            f"cap_breaches={len(f.cap_breaches)} intents={f.wanted} "
            f"master_orders={self.master_orders} fault_responses={self.fault_responses} "
            f"crashes={self.crashes} relogins={self.relogins} ticks={self.ticks} wall_s={self.wall_s:.1f} "
            f"seed={self.config.seed} schedule={self.schedule}"
        )

    def detail_lines(self) -> list[str]:
        return [
            "events by kind: " + ", ".join(f"{k}={n}" for k, n in sorted(self.event_kinds.items())),
            "faults by kind: "
            + (", ".join(f"{k}={n}" for k, n in sorted(self.fault_kinds.items())) or "none"),
            "engine: "
            + (", ".join(f"{k}={n}" for k, n in sorted(self.engine.items())) or "no recovery needed"),
            "ticks: "
            + ", ".join(f"{k}={n}" for k, n in sorted(self.tick_outcomes.items()))
            + "".join(f"\n  tick error: {e}" for e in self.tick_errors),
            f"staff: relogins={self.relogins} breaker_resets={self.breaker_resets}; "
            f"quiet period: {self.quiesce_ticks} ticks",
            *self.findings.problems(),
        ]


def _instrument(
    symbol: str,
    kind: str,
    price: str,
    token: int,
    *,
    exchange: str = EXCHANGE,
    segment: str = "NFO-FUT",
    lot: int = 75,
    strike: str = "0",
    freeze: int | None = 1800,
) -> None:
    PaperInstrument.objects.create(
        exchange=exchange,
        tradingsymbol=symbol,
        instrument_token=token,
        name="NIFTY",
        underlying="NIFTY",
        instrument_type=kind,
        segment=segment,
        lot_size=lot,
        expiry=None if kind == InstrumentType.INDEX else EXPIRY,
        strike=Decimal(strike),
        last_price=Decimal(price),
        freeze_quantity=freeze,
    )


class World:
    """The accounts of one soak (a master and N children on the Kite path) and the staff's actions."""

    def __init__(self, sim: KiteSim, rng: random.Random, children: int, *, money: bool = False) -> None:
        self.sim = sim
        self.api_keys: dict[str, str] = {}
        _instrument(
            "NIFTY 50",
            InstrumentType.INDEX,
            "20000",
            256265,
            exchange="NSE",
            segment="INDICES",
            lot=0,
            freeze=None,
        )
        _instrument(FUT, InstrumentType.FUT, "20000", 900001)
        _instrument(CALL, InstrumentType.CE, "200", 900002, segment="NFO-OPT", strike="20000")
        _instrument(PUT, InstrumentType.PE, "150", 900003, segment="NFO-OPT", strike="20000")
        self._account(MASTER, Decimal("2000000"), role=Role.MASTER)
        self.children: list[str] = []
        self.description: list[str] = []
        for n in range(1, children + 1):
            user = f"S{n:03d}"
            cash = Decimal(rng.randint(15, 80) * 100_000)  # most children get a lot of a 1-lot entry
            fields: dict[str, object] = {}
            if rng.random() < 0.2:
                fields = {
                    "capital_mode": CapitalMode.FIXED,
                    "fixed_capital": cash / 2,
                    "multiplier": Decimal(rng.choice(["0.5", "1", "2"])),
                }
            if money and rng.random() < 0.4:  # caps that bite on a 1-3 lot master order (issue 11)
                cap = rng.choice(["max_lots_per_order", "max_quantity", "max_order_value"])
                fields[cap] = {
                    "max_lots_per_order": rng.randint(1, 2),
                    "max_quantity": rng.choice([75, 150]),
                    "max_order_value": Decimal(rng.choice([2_000_000, 3_500_000])),
                }[cap]
            self._account(user, cash, role=Role.CHILD, **fields)
            self.children.append(user)
            self.description.append(f"{user} {cash} {sorted(fields.items())}")

    def _account(self, user: str, cash: Decimal, *, role: str, **fields: object) -> None:
        PaperAccount.objects.create(user_id=user, cash=cash)
        api_key = f"soak{user.lower()}{secrets.token_hex(4)}"
        session = self.sim.store.create(user_id=user, api_key=api_key, expires_at=FAR)
        self.api_keys[user] = api_key
        Account.objects.create(
            broker=Broker.KITE,
            broker_user_id=user,
            role=role,
            display_name=user,
            consent_given_at=timezone.now(),
            consent_version="soak",
            api_key=api_key,
            api_secret=f"soaksecret{secrets.token_hex(8)}",
            access_token=session.access_token,
            token_obtained_at=timezone.now(),
            token_expires_at=FAR,
            **fields,
        )

    def relogin(self, account: Account) -> None:
        """The daily login again: a new session at the broker, its token stored (back to ACTIVE)."""
        user = account.broker_user_id
        session = self.sim.store.create(user_id=user, api_key=self.api_keys[user], expires_at=FAR)
        account_set_credentials(
            account=account, actor=STAFF, access_token=session.access_token, expires_at=FAR
        )

    def reset_breakers(self) -> int:
        """Staff resume children whose circuit breaker tripped (pause, then resume, as on the dashboard)."""
        tripped = list(
            Account.objects.filter(
                role=Role.CHILD, status=AccountStatus.ACTIVE, breaker_tripped_at__isnull=False
            )
        )
        for account in tripped:
            account = account_set_status(
                account=account, status=AccountStatus.PAUSED, actor=STAFF, reason="soak"
            )
            account_set_status(account=account, status=AccountStatus.ACTIVE, actor=STAFF, reason="soak")
        return len(tripped)


class _Staff:
    """Logs children in again one tick after they were found NEEDS_LOGIN (the next tick skips them)."""

    def __init__(self, world: World, report: SoakReport) -> None:
        self.world = world
        self.report = report
        self._seen: set[int] = set()

    def after_tick(self, *, at_once: bool = False) -> None:
        waiting = list(Account.objects.filter(status=AccountStatus.NEEDS_LOGIN))
        for account in waiting:
            if at_once or account.pk in self._seen:
                self.world.relogin(account)
                self._seen.discard(account.pk)
                self.report.relogins += 1
            else:
                self._seen.add(account.pk)


class _Engine:
    """The orchestrator "process": a tick that dies at an armed failpoint is a crash, and a new
    orchestrator (a new holder) takes over, as a restarted process would."""

    def __init__(self, config: SoakConfig, world: World, report: SoakReport) -> None:
        self.config = config
        self.report = report
        self.staff = _Staff(world, report)
        self.orchestrator = self._start()

    def _start(self) -> Orchestrator:
        holder = f"soak-{self.config.seed}-{self.report.crashes}"
        return Orchestrator(holder=holder, workers=self.config.workers)

    def tick(self, *, at_once: bool = False) -> None:
        try:
            result = self.orchestrator.run_tick()
        except FailpointTriggered:
            self.report.tick_outcomes["crashed"] += 1
            self.report.crashes += 1
            failpoints.configure({})
            # The dead process's pool is gone and its lease free: here the sends already on their
            # way finish first, and the lease is handed back instead of waiting out its expiry.
            self.orchestrator.close()
            self.orchestrator = self._start()
        else:
            self.report.tick_outcomes[
                "errors" if result.errors else "ok" if result.leader else "not_leader"
            ] += 1
            if result.errors and len(self.report.tick_errors) < 5:
                self.report.tick_errors.append(result.errors[0][:300])
        self.report.ticks += 1
        self.staff.after_tick(at_once=at_once)

    def close(self) -> None:
        self.orchestrator.close()


def run_soak(config: SoakConfig, *, progress: Callable[[str], None] = lambda _m: None) -> SoakReport:
    """Run one seeded session on the current (empty, migrated) database and check the invariants."""
    if config.events < 1 or config.children < 1 or not 0 <= config.fault_rate <= 1:
        raise ValueError("events and children must be positive and fault_rate between 0 and 1")
    rng = random.Random(config.seed)
    report = SoakReport(config=config)
    schedule: list[str] = []
    running = start(sim=KiteSim(), host="127.0.0.1", port=0)
    shared_cache(running.root).clear()
    with ExitStack() as stack:
        stack.callback(lambda: shared_cache(running.root).clear())
        stack.callback(running.stop)
        stack.enter_context(
            override_settings(
                KITE_API_ROOT=running.root,
                KITE_TIMEOUT_S=config.kite_timeout_s,
                UNKNOWN_GRACE_SECONDS=config.unknown_grace_s,
                MAX_EVENT_AGE=3600,
                DRY_RUN=False,
                REPLICATION_MODE="order",
                FANOUT_MODE="threads",
                CHILD_SNAPSHOT_MAX_AGE=30,
                CHILD_MARGIN_PREFLIGHT=False,
            )
        )
        world = World(running.sim, rng, config.children, money=config.money)
        schedule.extend(world.description)
        desk = MasterDesk(money=config.money)
        chaos = Chaos(running.sim, world.children, kite_timeout_s=config.kite_timeout_s, money=config.money)
        failpoints.configure({})  # only the schedule's crashes, whatever PMS_FAILPOINTS says
        stack.callback(failpoints.reset)
        engine = _Engine(config, world, report)
        stack.callback(engine.close)
        watch = StarvedWatch(world.children, settle=config.settle_ticks, chaos=chaos)

        def tick(*, at_once: bool = False) -> None:
            engine.tick(at_once=at_once)
            if config.money:
                watch.after_tick(report.ticks)

        started = time.monotonic()
        tick()  # the master's baseline snapshot
        for step in range(config.events):
            chaos.switch_off_due(step=step)
            event = desk.act(rng)
            report.events += 1
            report.event_kinds[event.kind] += 1
            report.master_orders += event.orders
            schedule.append(f"{step} {event.kind} {event.detail}")
            fault = chaos.maybe_inject(rng, step=step, rate=config.fault_rate)
            if fault is not None:
                schedule.append(fault.describe())
            # Sometimes two events land in one tick, sometimes a tick passes with nothing new.
            ticks = 1 if step == config.events - 1 else rng.choices([0, 1, 2], weights=[15, 60, 25])[0]
            schedule.append(f"{step} ticks {ticks}")
            for _ in range(ticks):
                tick()
            chaos.disarm_crash()
            if step % 10 == 9:
                report.breaker_resets += world.reset_breakers()
            if (step + 1) % 50 == 0:
                elapsed = time.monotonic() - started
                progress(f"  {step + 1}/{config.events} events, {report.ticks} ticks, {elapsed:.0f} s")
        report.faults_injected = len(chaos.injected)
        report.fault_kinds.update(f.kind for f in chaos.injected)
        report.fault_responses = sum(n for hit, n in running.sim.hits.items() if hit.status in ERROR_STATUSES)
        _quiesce(config, desk, chaos, world, report, tick)
        starved_before_flatten: list[str] = []
        if config.money:
            # Owed exits: where the master is flat, no child may still hold after the settle ticks.
            starved_before_flatten = [f"{s} (before the master flattened)" for s in _starved_now(world)]
            report.master_orders += desk.flatten()
            _quiesce(config, desk, chaos, world, report, tick, settle=config.settle_ticks)
        report.wall_s = time.monotonic() - started
    report.schedule = hashlib.sha256("\n".join(schedule).encode()).hexdigest()[:12]
    report.findings = check_invariants()
    report.findings.starved = sorted({*watch.starved, *starved_before_flatten, *report.findings.starved})
    report.engine.update(
        ReplicationEvent.objects.filter(kind__in=RECOVERY_EVENTS).values_list("kind", flat=True)
    )
    return report


def _starved_now(world: World) -> list[str]:
    children = dict(
        Account.objects.filter(broker_user_id__in=world.children).values_list("broker_user_id", "pk")
    )
    return starved_exits(children)


class StarvedWatch:
    """During the session: an instrument the master has been flat in for `settle` ticks in a row,
    with no gating fault on (halt, dry-run, disable) and every child logged in, must be flat at
    every child; a child still holding there is a starved exit (recorded once per episode)."""

    def __init__(self, children: list[str], *, settle: int, chaos: Chaos) -> None:
        self.children = children
        self.settle = settle
        self.chaos = chaos
        self.flat_ticks: Counter[str] = Counter()
        self.starved: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def after_tick(self, tick_no: int) -> None:
        blocked = (
            self.chaos.gating
            or Account.objects.filter(
                broker_user_id__in=self.children, status=AccountStatus.NEEDS_LOGIN
            ).exists()
        )
        symbols = {FUT, CALL, PUT}
        flat = master_flat_symbols(symbols) if not blocked else set()
        for symbol in symbols:
            self.flat_ticks[symbol] = self.flat_ticks[symbol] + 1 if symbol in flat else 0
            if symbol not in flat:
                self._seen = {k for k in self._seen if k[1] != symbol}  # a new episode later
        due = {s for s in symbols if self.flat_ticks[s] >= self.settle}
        if not due:
            return
        for user, symbol, quantity in (
            PaperPosition.objects.filter(account__user_id__in=self.children, tradingsymbol__in=due)
            .exclude(quantity=0)
            .values_list("account__user_id", "tradingsymbol", "quantity")
        ):
            if (user, symbol) not in self._seen:
                self._seen.add((user, symbol))
                self.starved.append(
                    f"{user} {symbol}: holds {quantity} at tick {tick_no}, "
                    f"master flat for {self.flat_ticks[symbol]} clear ticks"
                )


UNSIZED_LIVE = (AllocationStatus.PLANNED, AllocationStatus.DISPATCHED)


def _quiesce(
    config: SoakConfig,
    desk: MasterDesk,
    chaos: Chaos,
    world: World,
    report: SoakReport,
    tick: Callable[..., None],
    *,
    settle: int = 0,
) -> None:
    """Faults off, everyone logged in, the master's resting orders cancelled; then tick until
    nothing is in flight for two ticks in a row, both after the last hidden order has come back
    into its book (bounded by `quiesce_timeout_s`), and at least `settle` ticks."""
    chaos.clear()
    visible_again = time.monotonic() + LATE_BOOK_MAX_S + 0.2
    for account in Account.objects.filter(status=AccountStatus.NEEDS_LOGIN):
        world.relogin(account)
        report.relogins += 1
    desk.cancel_open_limits()
    deadline = time.monotonic() + config.quiesce_timeout_s
    quiet = 0
    ticks = 0
    while time.monotonic() < deadline and (quiet < 2 or ticks < settle):
        tick(at_once=True)
        ticks += 1
        report.quiesce_ticks += 1
        # An unsized opening group (its first wave made, the rest not yet) is work in flight too.
        if (
            OrderMapping.objects.filter(status__in=IN_FLIGHT).exists()
            or Allocation.objects.filter(sized=False, status__in=UNSIZED_LIVE).exists()
        ):
            quiet = 0
        elif time.monotonic() >= visible_again:
            quiet += 1
            continue
        time.sleep(0.2)  # the engine's grace and the late book run on the real clock
