"""Benchmark the engine on a throwaway database: sizing, an idle tick, and the fan-out of one event."""

from __future__ import annotations

import random
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from replication.bench import BenchConfig, run_bench


class Command(BaseCommand):
    help = (
        "Build N paper children with simulated broker latency on a throwaway database, replicate one "
        "master event, and print the figures. The last line is machine-readable: "
        "bench: children=N latency_ms=L sizing_ms=X tick_ms=Y fanout_s=Z p99_child_ms=W queries_per_tick=Q"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--children", type=int, default=1000)
        parser.add_argument("--latency-ms", type=float, default=50.0)
        parser.add_argument("--workers", type=int, default=None, help="fan-out pool size (FANOUT_WORKERS)")
        parser.add_argument(
            "--sizing-children", type=int, default=10_000, help="children for the pure sizing measurement"
        )
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--exchange",
            choices=("paper", "memory"),
            default="paper",
            help="paper: children on the database-backed paper exchange; memory: children on an "
            "in-memory exchange with the same latency, to measure the engine apart from the paper "
            "exchange's own per-order database writes",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["children"] < 1 or options["children"] > 20_000:
            raise CommandError("--children must be between 1 and 20000")
        if options["latency_ms"] < 0:
            raise CommandError("--latency-ms must not be negative")
        if options["workers"] is not None and options["workers"] < 0:
            raise CommandError("--workers must not be negative")
        config = BenchConfig(
            children=options["children"],
            latency_ms=options["latency_ms"],
            workers=options["workers"],
            sizing_children=options["sizing_children"],
            rng=random.Random(options["seed"]),
            exchange=options["exchange"],
        )
        started = time.perf_counter()
        result = run_bench(config, progress=lambda msg: self.stdout.write(f"  {msg}"))
        self.stdout.write(f"  done in {time.perf_counter() - started:.1f}s")
        for line in result.detail_lines():
            self.stdout.write(line)
        self.stdout.write(result.line())
