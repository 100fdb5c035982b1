"""Small, fast versions of the scale benchmarks (`make scale` runs the real sizes).

`bench_fanout` runs as a subprocess, on a throwaway database of its own: over HTTP against the
Kite simulator, and in queue mode across a real django-q2 cluster with a Redis broker started by
scripts/redis_env.sh (which installs redis-server with apt-get when it is missing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE_FIELDS = {
    "children",
    "latency_ms",
    "sizing_ms",
    "tick_ms",
    "fanout_s",
    "p99_child_ms",
    "queries_per_tick",
}


def _bench(
    *args: str, env: dict[str, str], wrapper: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*wrapper, sys.executable, "manage.py", "bench_fanout", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _test_settings_env() -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test"}
    env.pop("PMS_FAILPOINTS", None)
    if "postgres" not in env.get("DATABASE_URL", ""):
        env.pop("DATABASE_URL", None)
    return env


def _last_line_fields(stdout: str) -> dict[str, str]:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("bench: ")
    fields = dict(part.split("=") for part in last.split()[1:])
    assert set(fields) == LAST_LINE_FIELDS
    return fields


def _redis_possible() -> bool:
    """redis-server is installed, or scripts/redis_env.sh can install it with apt-get."""
    if shutil.which("redis-server"):
        return True
    can_be_root = os.geteuid() == 0 or shutil.which("sudo") is not None
    return shutil.which("apt-get") is not None and can_be_root


def test_bench_scale_kite_sim_over_http_places_one_order_per_child():
    done = _bench(
        "--children",
        "20",
        "--latency-ms",
        "5",
        "--exchange",
        "kite-sim",
        "--sim",
        "thread",
        "--workers",
        "8",
        "--sizing-children",
        "500",
        env=_test_settings_env(),
    )

    assert done.returncode == 0, done.stdout + done.stderr
    fields = _last_line_fields(done.stdout)
    assert fields["children"] == "20" and float(fields["fanout_s"]) > 0
    assert "run: mode=threads workers=8 " in done.stdout and "simulator=thread" in done.stdout
    assert "simulator: 20 order writes answered 200 over HTTP" in done.stdout
    assert (
        "orders: 20 children, 20 with exactly one order at the exchange, 0 with none, "
        "0 with more than one" in done.stdout
    )


@pytest.mark.parametrize(("detect", "first_look"), [("poll", False), ("stream", False), ("stream", True)])
def test_bench_memory_sim_reports_engine_and_simulator_cpu_detection_loop_and_limit(detect, first_look):
    done = _bench(
        *(["--first-look"] if first_look else []),
        "--children",
        "30",
        "--latency-ms",
        "20",
        "--exchange",
        "kite-sim",
        "--workers",
        "8",
        "--detect",
        detect,
        "--sizing-children",
        "500",
        "--wait-s",
        "60",
        env=_test_settings_env(),
    )

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "simulator=memory" in out
    assert (
        "orders: 30 children, 30 with exactly one order at the exchange, 0 with none, "
        "0 with more than one" in out
    )
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    cpu = re.search(r"engine ([\d.]+) ms .* simulator ([\d.]+) ms per request", out)
    assert cpu is not None and float(cpu[1]) > 0 and float(cpu[2]) > 0
    detection = rf"detection \({detect}\): master order placed -> first child order at the simulator \d+ ms"
    assert re.search(detection, out)
    assert "sequential loop: 100 SDK place_order calls in a row" in lines["sequential loop"]
    assert "extrapolated to 30 children" in out and "EXTRAPOLATED" in out
    assert re.search(r"speed-up: \d+x", out)
    limit = r"limit for this run: [\d.]+ s = one round trip \d+ ms \+ [\d.]+ ms CPU x 30 orders / 1 core"
    assert re.search(limit, out)
    if detect == "stream":
        assert "order stream connected to ws://127.0.0.1:" in out
    assert f"master={'first-look' if first_look else 'seen-today'}" in lines["run"]


def test_bench_scale_queue_mode_over_redis_places_one_order_per_child(tmp_path):
    if not _redis_possible() and os.environ.get("CI", "").lower() != "true":
        pytest.skip("no redis-server and no apt-get to install it (CI runs this test)")
    env = {k: v for k, v in os.environ.items() if k not in ("PMS_FAILPOINTS", "REDIS_URL", "Q_SYNC")}
    env.update(
        DJANGO_SETTINGS_MODULE="pms.settings",  # a real cluster: the test settings run tasks inline
        LAB_ENABLED="true",  # bench_fanout is a command of the lab app
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        SECRET_KEY="bench-scale-test-secret-key-not-used-elsewhere",
        LOG_LEVEL="WARNING",
    )
    if "postgres" not in env.get("DATABASE_URL", ""):
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'bench.sqlite3'}"  # the bench makes its own

    done = _bench(
        "--children",
        "20",
        "--latency-ms",
        "5",
        "--exchange",
        "kite-sim",
        "--mode",
        "queue",
        "--queue-workers",
        "2",
        "--workers",
        "4",
        "--sizing-children",
        "500",
        "--wait-s",
        "120",
        env=env,
        wrapper=(str(ROOT / "scripts" / "redis_env.sh"),),
    )

    assert done.returncode == 0, done.stdout + done.stderr
    fields = _last_line_fields(done.stdout)
    assert fields["children"] == "20" and float(fields["fanout_s"]) > 0
    assert "run: mode=queue workers=2x4 " in done.stdout and "broker=redis" in done.stdout
    assert "queue: 2 shard tasks enqueued" in done.stdout
    assert (
        "orders: 20 children, 20 with exactly one order at the exchange, 0 with none, "
        "0 with more than one" in done.stdout
    )


def test_bench_scale_rejects_queue_mode_on_the_memory_exchange():
    done = _bench("--children", "5", "--mode", "queue", "--exchange", "memory", env=_test_settings_env())

    assert done.returncode != 0
    assert "use --exchange paper or kite-sim" in done.stderr


def test_bench_scale_queue_mode_refuses_inline_task_settings():
    done = _bench("--children", "5", "--mode", "queue", "--sizing-children", "10", env=_test_settings_env())

    assert done.returncode != 0
    assert "needs a real django-q2 cluster" in done.stderr
