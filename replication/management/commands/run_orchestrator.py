"""Run the orchestrator: one tick every POLL_INTERVAL seconds (or one tick with --once)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

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

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] if options["interval"] is not None else settings.POLL_INTERVAL
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        stop = threading.Event()
        if not options["once"]:
            install_signal_handlers(stop)
        run_loop(
            stop=stop,
            interval=interval,
            max_ticks=1 if options["once"] else options["max_ticks"],
            write=self.stdout.write,
        )


def run_loop(*, stop: threading.Event, interval: float, max_ticks: int | None, write: Any) -> int:
    """Loop ticks until `stop` is set or `max_ticks` ran. Returns the number of ticks run."""
    orchestrator = Orchestrator()
    ticks = 0
    write(f"orchestrator {orchestrator.holder} started (interval {interval}s)")
    try:
        while not stop.is_set():
            result = orchestrator.run_tick()
            ticks += 1
            line = result.summary()
            write(line)
            for error in result.errors:
                write(f"  error: {error}")
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
