"""The fan-out benchmark (DESIGN §7, §8), `manage.py bench_fanout`; lab.bench.run says how it runs."""

from lab.bench.config import DETECTIONS, EXCHANGES, MODES, SIM_LOCATIONS, BenchConfig, BenchError, BenchResult
from lab.bench.run import run_bench

__all__ = [
    "DETECTIONS",
    "EXCHANGES",
    "MODES",
    "SIM_LOCATIONS",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "run_bench",
]
