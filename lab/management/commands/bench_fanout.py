"""Benchmark the engine on a throwaway database: sizing, an idle tick, and the fan-out of one event."""

from __future__ import annotations

import random
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.bench import DETECTIONS, EXCHANGES, MODES, SIM_LOCATIONS, BenchConfig, BenchError, run_bench


class Command(BaseCommand):
    help = (
        "Build N children with simulated broker latency on a throwaway database, replicate one "
        "master event, and print the figures. The last line is machine-readable: "
        "bench: children=N latency_ms=L sizing_ms=X tick_ms=Y fanout_s=Z p99_child_ms=W queries_per_tick=Q"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--children", type=int, default=1000)
        parser.add_argument("--latency-ms", type=float, default=50.0)
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="fan-out pool size (FANOUT_WORKERS); in queue mode, the pool of each qcluster worker",
        )
        parser.add_argument(
            "--sizing-children", type=int, default=10_000, help="children for the pure sizing measurement"
        )
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--exchange",
            choices=EXCHANGES,
            default="paper",
            help="paper: children on the database-backed paper exchange; memory: children on an "
            "in-memory exchange with the same latency, to measure the engine apart from the paper "
            "exchange's own per-order database writes; kite-sim: master and children on the Kite "
            "path, over HTTP to the Kite simulator on 127.0.0.1 (which adds the latency per request)",
        )
        parser.add_argument(
            "--mode",
            choices=MODES,
            default="threads",
            help="threads: the orchestrator sends from its own pool; queue: one django-q2 task per "
            "shard, sent by a `qcluster` subprocess (Redis broker when REDIS_URL is set, else the "
            "ORM); needs DJANGO_SETTINGS_MODULE=pms.settings (a real cluster, not Q_SYNC)",
        )
        parser.add_argument(
            "--queue-workers",
            type=int,
            default=2,
            help="queue mode: qcluster worker processes (Q_WORKERS)",
        )
        parser.add_argument(
            "--queue-shards",
            type=int,
            default=None,
            help="queue mode: shards of children, one task each (FANOUT_SHARDS; default: as many as "
            "--queue-workers). A shard's sends must finish inside django-q2's task timeout (50 s)",
        )
        parser.add_argument(
            "--sim",
            choices=SIM_LOCATIONS,
            default="",
            help="kite-sim: memory (the default): a `manage.py kite_sim --memory-orders` subprocess "
            "answering the children's orders from memory on an event loop, so the rig costs less "
            "than the engine; thread: the simulator in this process, every order persisted in the "
            "paper exchange; process: the same as a subprocess",
        )
        parser.add_argument(
            "--detect",
            choices=DETECTIONS,
            default="poll",
            help="kite-sim with --sim memory: the master's order goes in through the SDK while the "
            "orchestrator loop polls every POLL_INTERVAL (poll) or is woken by the master's order "
            "stream on the simulator's WebSocket (stream); reports master order -> first child order",
        )
        parser.add_argument(
            "--first-look",
            action="store_true",
            help="the master's event is the first of the day the engine sees: no position stored for "
            "today, so its positions are read after its book (one round trip more); without it the "
            "master has a stored (flat) position for today, as for every later event of the day",
        )
        parser.add_argument(
            "--loop-calls",
            type=int,
            default=100,
            help="kite-sim with --sim memory: SDK calls in the sequential loop timed for comparison (>= 100)",
        )
        parser.add_argument(
            "--wait-s",
            type=float,
            default=300.0,
            help="bound on each wait: a subprocess to start, the last order to be sent, the recovery ticks",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["children"] < 1 or options["children"] > 20_000:
            raise CommandError("--children must be between 1 and 20000")
        if options["latency_ms"] < 0:
            raise CommandError("--latency-ms must not be negative")
        if options["workers"] is not None and options["workers"] < 0:
            raise CommandError("--workers must not be negative")
        if not 1 <= options["queue_workers"] <= 64:
            raise CommandError("--queue-workers must be between 1 and 64")
        if options["queue_shards"] is not None and not 1 <= options["queue_shards"] <= 1024:
            raise CommandError("--queue-shards must be between 1 and 1024")
        if options["wait_s"] <= 0:
            raise CommandError("--wait-s must be positive")
        if not 100 <= options["loop_calls"] <= 5000:
            raise CommandError("--loop-calls must be between 100 and 5000")
        if options["sim"] and options["exchange"] != "kite-sim":
            raise CommandError("--sim applies to --exchange kite-sim only")
        if options["mode"] == "queue" and options["exchange"] == "memory":
            raise CommandError("--mode queue sends from other processes: use --exchange paper or kite-sim")
        config = BenchConfig(
            children=options["children"],
            latency_ms=options["latency_ms"],
            workers=options["workers"],
            sizing_children=options["sizing_children"],
            rng=random.Random(options["seed"]),
            exchange=options["exchange"],
            mode=options["mode"],
            queue_workers=options["queue_workers"],
            queue_shards=options["queue_shards"],
            wait_s=options["wait_s"],
            sim=options["sim"],
            detect=options["detect"],
            loop_calls=options["loop_calls"],
            first_look=options["first_look"],
        )
        started = time.perf_counter()
        try:
            result = run_bench(config, progress=lambda msg: self.stdout.write(f"  {msg}"))
        except BenchError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"  done in {time.perf_counter() - started:.1f}s")
        for line in result.detail_lines():
            self.stdout.write(line)
        self.stdout.write(result.line())
        if result.orders is not None and not result.orders.ok:
            raise CommandError(f"not every child got exactly one order: {result.orders.line()}")
