"""Chaos soak (issue 7): a seeded, fast-clock session of master events on the Kite path, with random
faults from the Kite simulator, then a quiet period and the invariants (`invariants.py` defines
duplicates, lost orders and the rest). `manage.py soak` runs it on a throwaway database.

    report = run_soak(SoakConfig(seed=7, events=300, children=10, fault_rate=0.3))
    report.line()   # "events=300 child_orders=... faults_injected=... duplicates=0 lost=0 ..."
"""

from lab.soak.invariants import Findings, check_invariants, describe_tags
from lab.soak.run import SoakConfig, SoakReport, run_soak

__all__ = ["Findings", "SoakConfig", "SoakReport", "check_invariants", "describe_tags", "run_soak"]
