"""factory-boy factories for replication rows, and a seeded desk of N children for query-count tests."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import Account
from brokers.types import Position, Product
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    MarginSnapshot,
    MasterOrder,
    OrderMapping,
    ReplicationEvent,
    TickRun,
)
from tests.factories import AccountFactory, MasterAccountFactory


class TickRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TickRun

    holder = "host:1:abc123"
    epoch = 1
    outcome = TickRun.Outcome.OK
    duration_ms = 12
    finished_at = factory.LazyFunction(timezone.now)
    counts = factory.LazyFunction(lambda: {"events": 1, "intents": 2, "sent": 2})


class MarginSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MarginSnapshot

    account = factory.SubFactory(AccountFactory)
    used_margin = Decimal("300000.00")
    available_margin = Decimal("700000.00")
    capital = Decimal("1000000.00")


class MasterOrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MasterOrder

    account = factory.SubFactory(MasterAccountFactory)
    broker_order_id = factory.Sequence(lambda n: f"25{n:013d}")
    exchange = "NFO"
    tradingsymbol = "NIFTY25DECFUT"
    product = "NRML"
    side = "BUY"
    order_type = "MARKET"
    quantity = 150
    filled_quantity = 150
    average_price = Decimal("20000.00")
    status = "COMPLETE"


class AllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Allocation

    master = factory.SubFactory(MasterAccountFactory)
    group_key = factory.Sequence(lambda n: f"t{n}")
    kind = AllocationKind.OPEN
    status = AllocationStatus.DISPATCHED
    sized = True
    exchange = "NFO"
    tradingsymbol = "NIFTY25DECFUT"
    product = "NRML"
    side = "BUY"
    master_quantity = 150
    lot_size = 75
    master_lots = 2
    unit_lots = 2
    master_capital = Decimal("1000000.00")
    attributed_margin = Decimal("300000.00")
    margin_source = "delta_u"
    fraction = Decimal("0.3")


class OrderMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderMapping

    allocation = factory.SubFactory(AllocationFactory)
    child = factory.SubFactory(AccountFactory)
    tag = factory.Sequence(lambda n: f"T{n:08d}")
    status = MappingStatus.FILLED
    exchange = "NFO"
    tradingsymbol = "NIFTY25DECFUT"
    product = "NRML"
    side = "BUY"
    lots = 1
    quantity = 75
    filled_quantity = 75
    average_price = Decimal("20001.50")
    latency_ms = factory.Sequence(lambda n: 40 + (n * 37) % 900)


@dataclass
class SeededDesk:
    master: Account
    children: list[Account]
    allocations: list[Allocation]


def seed_desk(children: int) -> SeededDesk:
    """A master, `children` children with snapshots, two allocations (one entry, one held for
    approval) with an order per child, a few ticks (one with an error) and events."""
    master = MasterAccountFactory()
    tick = TickRunFactory()
    TickRunFactory(outcome=TickRun.Outcome.ERROR, error="master read failed: timed out")
    MarginSnapshotFactory(account=master)
    MarginSnapshotFactory(account=master, used_margin=Decimal("450000.00"))
    entry = AllocationFactory(master=master, tick=tick)
    entry.master_orders.set([MasterOrderFactory(account=master)])
    held = AllocationFactory(
        master=master,
        tick=tick,
        status=AllocationStatus.AWAITING_APPROVAL,
        reason="approval mode is on",
        side="SELL",
        kind=AllocationKind.CLOSE,
        fraction=None,
        exit_ratio=Decimal("0.5"),
    )
    desk = SeededDesk(master, [], [entry, held])
    add_children(desk, children)
    return desk


def add_children(desk: SeededDesk, count: int) -> None:
    """`count` more children, each with a snapshot, an order in both allocations and an event."""
    entry, held = desk.allocations
    for _ in range(count):
        child = AccountFactory(display_name=f"Child {len(desk.children):03d}")
        desk.children.append(child)
        MarginSnapshotFactory(account=child)
        OrderMappingFactory(allocation=entry, child=child)
        OrderMappingFactory(
            allocation=held, child=child, status=MappingStatus.PLANNED, side="SELL", filled_quantity=0
        )
        ReplicationEvent.objects.create(kind="sent", account=child, allocation=entry, message="sent")


class NoDatabaseBroker:
    """Positions from memory: lets a query count measure the page, not the paper exchange."""

    def positions(self) -> list[Position]:
        return [Position("NFO", "NIFTY25DECFUT", Product.NRML, 75, Decimal("20000"), Decimal("20010"))]

    def instruments(self) -> list[object]:
        return []  # no listing: freeze quantities come from the allocations


class NoDatabaseClients:
    def get(self, account: Account) -> NoDatabaseBroker:
        return NoDatabaseBroker()
