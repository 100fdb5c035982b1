"""One tick of the engine (DESIGN §4.1), as numbered steps; each step is one stage's call.

Two-phase and crash-safe:
1. master orders and the allocations they cause are committed in one transaction (a restart sees
   the orders as known *and* finds the allocations), marked unsized;
2. each unsized allocation gets its child intents (sized, tagged) in a transaction of its own
   (a large opening group: its first wave, then the rest while that wave is in flight);
3. committed intents are sent through the one send gate; outcomes are written back in batches.
A crash between any two steps is picked up by the next tick: unsized allocations are sized (first
of all, before the master's changes of that tick are applied to them),
PLANNED intents are sent, SENDING / UNKNOWN ones are looked up by tag first.
"""

from __future__ import annotations

import gc
import time

from replication.engine.context import TickContext
from replication.engine.converge import cancel_stale_mirrors, converge_owed, trim_resting_copies
from replication.engine.detect import detect_events
from replication.engine.follow_up import follow_up
from replication.engine.plan import plan_allocations
from replication.engine.propagate import convert_filled_mirrors, propagate_changes
from replication.engine.read_master import read_master, snapshot_margins
from replication.engine.record import record_allocations
from replication.engine.send import send
from replication.engine.size import size_allocations
from replication.engine.timing import phase


def run_tick(ctx: TickContext) -> None:
    result, timings = ctx.result, ctx.result.timings_ms
    by_order = ctx.mode == "order"
    started = time.perf_counter()
    # 1. Follow up: unknown outcomes and crashed sends first, looked up by tag before anything new.
    result.followed_up += follow_up(ctx)
    # 1b. Finish what an earlier tick left unsized (it died, or a group's rest failed while its
    #     first wave was out) before this tick applies the master's changes to it (step 6), so
    #     that they reach every child's intents, not the first wave's alone.
    with phase(timings, "sizing_left"):
        result.intents += size_allocations(ctx)
    # 2. Read the master: its funds and order book. Without them nothing is decided this tick.
    with phase(timings, "master_read"):
        read = read_master(ctx)
    if read is None:
        return
    result.marks["master_read_done"] = time.perf_counter()
    with phase(timings, "engine_read_diff"):
        snapshot_margins(ctx, read)
        # 3. Detect events: the book against the known orders, classified against the position.
        detected = detect_events(ctx, read)
        if detected.record:
            # 4. Plan allocations: a fraction of capital for the opening group, exit ratios for closes.
            plans = plan_allocations(ctx, read, detected)
            # 5. Record the master's orders and the allocations, unsized, in one transaction.
            result.allocations += record_allocations(ctx, read, detected, plans)
            result.events += len(detected.events)
    # 6. Propagate the master's modifications and cancellations to the open child orders.
    if by_order and (detected.diff.modified or detected.diff.cancelled):
        propagate_changes(ctx, read.master, detected.diff)
    # 7. Size children: every unsized allocation (this tick's, or one a crash left behind); of a
    #    large opening group, the first wave of children only (`FANOUT_FIRST_WAVE`).
    with phase(timings, "sizing"):
        result.intents += size_allocations(ctx, first_wave=True)

    def size_the_rest() -> None:
        result.intents += size_allocations(ctx)

    # 8. Send through the one send gate (in the pool, or one queued task per shard of children);
    #    the rest of the group is sized (7 again) while the first wave is on its way, and sent.
    with phase(timings, "dispatch"):
        send(ctx, meanwhile=size_the_rest)
    # 9. Open mirrors of filled master orders go MARKET per child policy (after the new orders).
    if by_order and not ctx.control.halted:
        result.converted += convert_filled_mirrors(ctx)
    # 10. Converge owed exits: planned for every child that can trade now, then sent (§3.7).
    with phase(timings, "converge"):
        owed = converge_owed(ctx)
        result.owed_exits = owed.owed
        if owed.intents:
            result.intents += owed.intents
            send(ctx)
        # 11. Cancels held back or failed earlier (a child that could not trade) are sent again;
        #     copies of the master's resting exits are cut to what each child holds (never past zero).
        cancel_stale_mirrors(ctx)
        if by_order and not ctx.control.halted:
            trim_resting_copies(ctx)
    # Orders just sent are refreshed by the next tick's step 1 (or a postback), not here: a
    # second round of order-book reads would double the tick for a thousand children.
    # 12. An idle tick builds the children's broker clients and loads the day's instruments
    # ahead of the next master event.
    if not (result.events or result.intents):
        with phase(timings, "warm_clients"):
            built = ctx.clients.warm_children()
            ctx.instruments.warm(read.client)
            ctx.pool.start()
            if built and ctx.freeze_gc:
                # What the clients and the process hold from now on is long-lived: out of the
                # collector's way, so that the event tick's garbage collections scan only what
                # the tick itself makes (a full collection was ~90 ms inside a 1,000-child fan-out).
                # Unfrozen first: what an earlier freeze kept and is garbage now (clients replaced
                # by new tokens) is collected, not kept for the life of the process.
                gc.unfreeze()
                gc.collect()
                gc.freeze()
    timings["total"] = (time.perf_counter() - started) * 1000
