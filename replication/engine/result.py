"""What one tick reports (`Orchestrator.run_tick()` returns it; the tick row stores its counts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from replication.replicator import DispatchReport


@dataclass(slots=True)
class TickResult:
    leader: bool
    tick_id: int | None = None
    epoch: int = 0
    events: int = 0
    allocations: int = 0
    intents: int = 0
    dispatch: DispatchReport = field(default_factory=DispatchReport)
    followed_up: int = 0
    converted: int = 0  # open child mirrors of filled master orders made MARKET (§3.5)
    owed_exits: int = 0  # exits still owed after the convergence stage (§3.7)
    queued_shards: int = 0
    errors: list[str] = field(default_factory=list)
    duration_ms: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)  # perf_counter() instants, for benchmarks

    def summary(self) -> str:
        if not self.leader:
            return "tick: not leader (another orchestrator holds the lease); waiting"
        d = self.dispatch
        lat = sorted(d.latencies_ms)
        p50 = lat[len(lat) // 2] if lat else 0
        return (
            f"tick {self.tick_id} epoch={self.epoch} events={self.events} allocations={self.allocations} "
            f"intents={self.intents} sent={d.sent} accepted={d.accepted} rejected={d.rejected} "
            f"unknown={d.unknown} failed={d.failed} deferred={d.deferred} queued_shards={self.queued_shards} "
            f"updated={self.followed_up} converted={self.converted} "
            f"latency_p50_ms={p50} errors={len(self.errors)} duration_ms={self.duration_ms}"
        )

    def counts(self) -> dict[str, object]:
        """What the tick row keeps of this result."""
        return {
            "events": self.events,
            "allocations": self.allocations,
            "intents": self.intents,
            "sent": self.dispatch.sent,
            "accepted": self.dispatch.accepted,
            "rejected": self.dispatch.rejected,
            "unknown": self.dispatch.unknown,
            "failed": self.dispatch.failed,
            "updated": self.followed_up,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
