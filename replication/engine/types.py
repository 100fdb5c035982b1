"""The typed values the stages of a tick hand each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from accounts.models import Account
from brokers.base import BrokerClient
from brokers.types import Funds, InstrumentKey, Order, OrderRequest
from replication.events import BookDiff, MasterEvent
from replication.models import MarginSnapshot

Positions = dict[tuple[str, str, str], int]  # (exchange, tradingsymbol, product) -> signed quantity


@dataclass(frozen=True)
class CalculatorAsk:
    """What the calculator reads of an opening group ask: the orders, and the MARKET legs' prices."""

    requests: tuple[OrderRequest, ...]
    market: tuple[InstrumentKey, ...]


# Calculator reads made ahead of the events they are for: what they asked, and the answers.
Prefetched = tuple[CalculatorAsk, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MasterRead:
    """The master as read this tick: its funds and order book, and the snapshot from before."""

    master: Account
    client: BrokerClient
    funds: Funds
    book: list[Order]
    prev: MarginSnapshot | None  # the latest snapshot stored before this tick's
    # The calculator read for the streamed orders that woke this tick, made with the funds and
    # book (`replication.wakeup`): used only if the book's new orders ask exactly the same.
    hinted: Prefetched | None = None


@dataclass(slots=True)
class Detected:
    """This tick's book against what the engine knew: the diff and the events it makes."""

    diff: BookDiff
    now: datetime
    record: bool = False  # master orders (and the allocations of the events) are to be recorded
    events: tuple[MasterEvent, ...] = ()
    stored_positions: bool = False  # the master's stored positions hold for today
    existing: Positions | None = None  # the stored positions, fresh or not
    positions_after: Positions | None = None  # to store with the orders whose fills moved them
    prefetched: Prefetched | None = None
    # Known orders that filled for the first time this tick: the master's signed position in that
    # instrument just before the fill (from the stored positions and this tick's earlier fills).
    fill_before: dict[str, int] = field(default_factory=dict)
    # Of those, the ones whose fill came after fills of this tick's new orders in the instrument:
    # those new orders' ids (the retimed allocation is replayed after theirs).
    new_fills_before: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class EventPlan:
    """The allocation decision for one event: its lots, and a fraction (opening) or exit ratio."""

    lot_size: int
    master_lots: int
    freeze_quantity: int | None
    unit_lots: int = 0
    reference_price: Decimal = Decimal(0)
    exit_ratio: Decimal | None = None
    master_capital: Decimal | None = None
    attributed_margin: Decimal | None = None
    margin_source: str = ""
    underlying: str = ""  # of the event's instrument at the master's broker (instrument filters)
    fraction: Decimal | None = None
    reason: str = ""
