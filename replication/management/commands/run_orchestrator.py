"""Run the orchestrator: one tick every POLL_INTERVAL seconds (or one tick with --once).

The loop prints the ticks that did something (master events, allocations, child orders, order
updates, errors, a change of leader) and one heartbeat line every ENGINE_HEARTBEAT_SECONDS that
sums up the quiet ones; `--every-tick` prints every tick as before.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from replication.engine.result import TickResult
from replication.orchestrator import Orchestrator
from replication.wakeup import wait_for_wakeup

logger = logging.getLogger("replication.orchestrator")


class Command(BaseCommand):
    help = (
        "Replicate the master's trades to every child. Loops one tick every POLL_INTERVAL seconds; "
        "SIGTERM or Ctrl-C finishes the current tick, then exits. Only one orchestrator acts at a "
        "time (a database lease); a second one waits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")
        parser.add_argument("--interval", type=float, default=None, help="seconds between ticks")
        parser.add_argument("--max-ticks", type=int, default=None, help="stop after this many ticks")
        parser.add_argument(
            "--every-tick",
            action="store_true",
            help="print every tick, idle ones too (default: the ticks that did something, and a "
            "heartbeat line every ENGINE_HEARTBEAT_SECONDS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] if options["interval"] is not None else settings.POLL_INTERVAL
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        stop = threading.Event()
        if not options["once"]:
            install_signal_handlers(stop)
        every_tick = options["once"] or options["every_tick"]
        run_loop(
            stop=stop,
            interval=interval,
            max_ticks=1 if options["once"] else options["max_ticks"],
            write=self.stdout.write,
            heartbeat_seconds=None if every_tick else float(settings.ENGINE_HEARTBEAT_SECONDS),
            freeze_gc=not options["once"],  # a long-lived engine process owns its collector
        )


def did_something(result: TickResult) -> bool:
    """A tick worth a line: it saw master events, planned, sized or sent child orders, saw order
    updates, converted mirrors, queued shards or hit errors. Deferred sends alone are not news."""
    d = result.dispatch
    return bool(
        result.events
        or result.allocations
        or result.intents
        or d.sent
        or d.accepted
        or d.rejected
        or d.failed
        or d.unknown
        or result.followed_up
        or result.converted
        or result.queued_shards
        or result.errors
    )


@dataclass
class Heartbeat:
    """The quiet ticks since the last heartbeat line."""

    every: float
    clock: Callable[[], float]
    since: float = 0.0
    ticks: int = 0
    quiet: int = 0
    durations_ms: list[int] = field(default_factory=list)
    leader: bool | None = None
    owed_exits: int = 0

    def __post_init__(self) -> None:
        self.since = self.clock()

    def add(self, result: TickResult, *, quiet: bool) -> None:
        self.ticks += 1
        self.quiet += quiet
        self.durations_ms.append(result.duration_ms)
        self.leader = result.leader
        self.owed_exits = result.owed_exits

    def due(self) -> bool:
        return self.clock() - self.since >= self.every

    def line(self) -> str:
        seconds = self.clock() - self.since
        durations = sorted(self.durations_ms)
        p50 = durations[len(durations) // 2] if durations else 0
        role = "leader" if self.leader else "standby: another orchestrator holds the lease"
        text = (
            f"heartbeat: {self.ticks} ticks in {seconds:.0f}s ({self.quiet} quiet), {role}, "
            f"tick p50 {p50} ms max {durations[-1] if durations else 0} ms, owed exits {self.owed_exits}"
        )
        self.since, self.ticks, self.quiet, self.durations_ms = self.clock(), 0, 0, []
        return text


def run_loop(
    *,
    stop: threading.Event,
    interval: float,
    max_ticks: int | None,
    write: Any,
    heartbeat_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    freeze_gc: bool = False,
) -> int:
    """Loop ticks until `stop` is set or `max_ticks` ran. Returns the number of ticks run.

    `heartbeat_seconds` None: every tick is printed. Otherwise only the ticks that did something
    (and a change of leader), plus one heartbeat line every `heartbeat_seconds`. `freeze_gc`: the
    process is the engine's own (the command), see `Orchestrator`."""
    orchestrator = Orchestrator(freeze_gc=freeze_gc)
    ticks = 0
    beat = Heartbeat(every=heartbeat_seconds, clock=clock) if heartbeat_seconds is not None else None
    was_leader: bool | None = None
    write(f"orchestrator {orchestrator.holder} started (interval {interval}s)")
    try:
        while not stop.is_set():
            result = orchestrator.run_tick()
            ticks += 1
            news = beat is None or did_something(result) or result.leader != was_leader
            was_leader = result.leader
            if news:
                write(result.summary())
                for error in result.errors:
                    write(f"  error: {error}")
            if beat is not None:
                beat.add(result, quiet=not news)
                if beat.due():
                    write(beat.line())
            if max_ticks is not None and ticks >= max_ticks:
                break
            wait_for_wakeup(stop=stop, timeout=interval)
    finally:
        orchestrator.close()
        write(f"orchestrator {orchestrator.holder} stopped after {ticks} ticks")
    return ticks


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM / SIGINT set `stop`: the tick in progress finishes, then the loop exits."""

    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s: finishing the current tick", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
