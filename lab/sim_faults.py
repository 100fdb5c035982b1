"""The fault plumbing the Angel, Dhan and Alice Blue simulators share around an accepted write
(lab.kite_sim's fault spec): a place the order book shows only `late_book_s` later, and the
sleep or bare HTTP status (`ServerFault`) that follows an accepted order."""

from __future__ import annotations

import threading
import time

from lab.kite_sim.faults import Faults
from lab.sim_http import ServerFault


class AcceptedWrites:
    """What the faults do once a simulator has accepted an order write, per account."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._hidden_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def after_accept(self, account: str, *, order_id: str, placed: bool) -> None:
        """Hide a placed order from the book for a while, sleep, or answer a bare status."""
        if placed:
            late = self.faults.late_book_s(account)
            if late > 0:
                with self._lock:
                    self._hidden_until[order_id] = time.monotonic() + late
        decision = self.faults.after_accept(account)
        if decision.sleep_s > 0:
            time.sleep(decision.sleep_s)
        if decision.error_status is not None:
            raise ServerFault(decision.error_status)

    def visible(self, order_id: str) -> bool:
        """Whether the order book shows the order yet."""
        with self._lock:
            until = self._hidden_until.get(order_id)
            if until is None:
                return True
            if time.monotonic() >= until:
                del self._hidden_until[order_id]
                return True
            return False
