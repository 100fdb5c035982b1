"""Group commit for the paper exchange: orders sent at the same moment are placed as one batch.

The paper exchange is one matching engine: its writes from this process take turns (`turn`).
While one batch is being placed, the orders that other threads send queue up; the next thread to
get the turn places everything queued, in arrival order, in one transaction
(`placement.paper_orders_place`), and each waiting thread picks up its own result. No thread of
its own: whichever caller holds the turn does the work on its own database connection.

A batch that fails in the database (nothing committed, or a commit whose outcome is not known)
raises `OutcomeUnknown` in every caller of that batch, as a broker that may or may not have taken
the order: the engine then looks the order up by its tag instead of sending it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from brokers.errors import InputRejected, OutcomeUnknown
from brokers.paper.models import PaperOrder
from brokers.paper.placement import NewOrder, paper_orders_place

MAX_BATCH = 500


class _Slot:
    __slots__ = ("done", "error", "order", "result")

    def __init__(self, order: NewOrder) -> None:
        self.order = order
        self.done = False
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
    ) -> None:
        self.turn = turn
        self.place_batch = place_batch
        self.max_batch = max_batch
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()
        self.batches = 0  # batches placed so far (for tests and the benchmark's report)

    def place(self, order: NewOrder) -> PaperOrder:
        slot = _Slot(order)
        with self._queue_lock:
            self._queue.append(slot)
        while not slot.done:
            with self.turn:
                if slot.done:
                    break
                with self._queue_lock:
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                self._run(batch)
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None  # done without an error means placed
        return slot.result

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
