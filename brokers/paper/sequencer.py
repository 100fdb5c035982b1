"""Group commit for the paper exchange: orders sent at the same moment are placed as one batch.

The paper exchange is one matching engine: its writes from this process take turns (`turn`).
Callers queue their orders; one of them at a time, the *leader*, places what is queued, in
arrival order, in one transaction (`placement.paper_orders_place`) while it holds the turn, then
wakes the callers of that batch, each of which picks up its own result. A leader that finds its
own order placed hands the lead to the oldest caller still queued (or gives it up when none is),
so no caller places orders for others for long and none waits for a turn only to read its result;
a caller whose thread has led before (its database connection is open) is preferred.
No thread of its own: the leader does the work on its own database connection.

Orders sent together do not arrive together: each caller's simulated round trip (`delay`, slept
here before the order joins the queue) ends on its own, a millisecond or two apart. A leader that
placed its own order at once would place it alone and the rest, queued meanwhile, in a second
batch: two batches in turn where one would do (on PostgreSQL a batch is several round trips to
the server, a round of 128 sends took ~80 ms for a 50 ms latency). So a leader first waits, up to
`gather` (2 ms), for the orders due by then, as a database's group commit does; a caller whose
order is due later, or no one at all, keeps it from nothing.

A batch that fails in the database (nothing committed, or a commit whose outcome is not known)
raises `OutcomeUnknown` in every caller of that batch, as a broker that may or may not have taken
the order: the engine then looks the order up by its tag instead of sending it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from brokers.errors import InputRejected, OutcomeUnknown
from brokers.paper.models import PaperOrder
from brokers.paper.placement import NewOrder, paper_orders_place

MAX_BATCH = 500
GATHER_S = 0.002  # how long a leader waits for orders due shortly (see the module docstring)


class _Slot:
    __slots__ = ("done", "error", "lead", "order", "result", "thread", "woken")

    def __init__(self, order: NewOrder) -> None:
        self.order = order
        self.thread = threading.get_ident()
        self.done = False
        self.lead = False  # handed the lead: place the queue's next batch
        self.woken = threading.Event()
        self.result: PaperOrder | None = None
        self.error: Exception | None = None


class OrderSequencer:
    """Places orders from many threads in batches; `place` returns like a placement on its own."""

    def __init__(
        self,
        turn: threading.Lock,
        *,
        place_batch: Callable[[Sequence[NewOrder]], list[PaperOrder | InputRejected]] = paper_orders_place,
        max_batch: int = MAX_BATCH,
        gather: float = GATHER_S,
    ) -> None:
        self.turn = turn
        self.place_batch = place_batch
        self.max_batch = max_batch
        self.gather = gather
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()
        self._arrived = threading.Condition(self._queue_lock)  # notified as each order queues
        self._due: dict[int, float] = {}  # callers in their round trip: id(slot) -> when it ends
        self._leading = False  # a caller is placing batches (or has been handed the lead)
        self.batches = 0  # batches placed so far (for tests and the benchmark's report)
        # Threads that have led: each has its own database connection open (Django's are per
        # thread), so the lead goes to one of them when one is queued, rather than to a thread
        # that would first have to connect (milliseconds of CPU each, on the placement's path).
        self._connected: set[int] = set()

    def place(self, order: NewOrder, *, delay: float = 0.0) -> PaperOrder:
        """Place `order` after `delay` seconds (the simulated round trip), in a batch."""
        slot = _Slot(order)
        if delay > 0:
            with self._queue_lock:
                self._due[id(slot)] = time.monotonic() + delay
            try:
                time.sleep(delay)
            except BaseException:
                with self._queue_lock:
                    self._due.pop(id(slot), None)
                raise
        with self._queue_lock:
            self._due.pop(id(slot), None)
            self._queue.append(slot)
            slot.lead = not self._leading
            self._leading = True
            self._arrived.notify_all()
        if not slot.lead:
            slot.woken.wait()  # set when our batch is placed, or when we are handed the lead
        if slot.lead:
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None  # done without an error means placed
        return slot.result

    def _lead(self, own: _Slot) -> None:
        """Place batches until our own order is placed, then pass the lead on."""
        batch: list[_Slot] = []
        self._connected.add(own.thread)
        try:
            while True:
                with self._queue_lock:
                    if own.done:
                        break
                    self._gather()
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                with self.turn:
                    self._run(batch)
                self._wake(batch, own)
                batch = []
        finally:
            # Interrupted inside a batch (`_run` itself reports every Exception): its callers
            # must not wait forever, and the next caller must be able to lead.
            unfinished = [slot for slot in batch if not slot.done]
            for slot in unfinished:
                slot.error = OutcomeUnknown("paper exchange: placement interrupted", code="paper_db")
                slot.done = True
            self._wake(unfinished, own)
            with self._queue_lock:
                if own in self._queue:  # interrupted before our own batch: it is never placed
                    self._queue.remove(own)
                if self._queue:
                    # Any queued caller's order goes in the next batch, whoever leads it.
                    successor = next((s for s in self._queue if s.thread in self._connected), self._queue[0])
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._leading = False

    def _gather(self) -> None:
        """Wait (the queue's lock held, released while waiting) up to `gather` for the orders due
        by then, unless the batch is full already."""
        if self.gather <= 0 or not self._due:
            return
        deadline = time.monotonic() + self.gather
        while len(self._queue) < self.max_batch:
            now = time.monotonic()
            if now >= deadline or not any(due <= deadline for due in self._due.values()):
                return
            self._arrived.wait(deadline - now)

    @staticmethod
    def _wake(slots: list[_Slot], own: _Slot) -> None:
        for slot in slots:
            if slot is not own:
                slot.woken.set()

    def _run(self, batch: list[_Slot]) -> None:
        self.batches += 1
        try:
            results = self.place_batch([slot.order for slot in batch])
        # Any failure (the database, or a bug) must still release every waiting caller, each with
        # an error of its own; nothing of the batch was committed, or its commit is in doubt.
        except Exception as exc:  # noqa: BLE001 - reported to every caller of the batch
            for slot in batch:
                unknown = OutcomeUnknown(f"paper exchange: {type(exc).__name__}: {exc}", code="paper_db")
                unknown.__cause__ = exc
                slot.error = unknown
                slot.done = True
            return
        for slot, result in zip(batch, results, strict=True):
            if isinstance(result, InputRejected):
                slot.error = result
            else:
                slot.result = result
            slot.done = True
