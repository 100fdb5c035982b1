"""factory-boy factories for allocations and child order mappings (postback and stream tests)."""

from __future__ import annotations

import factory

from replication.models import Allocation, AllocationKind, AllocationStatus, MappingStatus, OrderMapping
from tests.factories import AccountFactory, MasterAccountFactory


class AllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Allocation

    master = factory.SubFactory(MasterAccountFactory)
    group_key = factory.Sequence(lambda n: f"g{n}")
    kind = AllocationKind.OPEN
    status = AllocationStatus.DISPATCHED
    exchange = "NSE"
    tradingsymbol = "SBIN"
    product = "CNC"
    side = "BUY"
    master_quantity = 10


class OrderMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderMapping

    allocation = factory.SubFactory(AllocationFactory)
    child = factory.SubFactory(AccountFactory)
    tag = factory.Sequence(lambda n: f"T{n:08d}")
    status = MappingStatus.OPEN
    exchange = "NSE"
    tradingsymbol = "SBIN"
    product = "CNC"
    side = "BUY"
    lots = 10
    quantity = 10
