"""Output (and filter) serializers of the replication API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    MasterOrder,
    OrderMapping,
)
from replication.reconciliation import Grade

# The master's own figures: only staff see them. A client could combine any of them with its own
# (its capital and target) into the master's capital: the fraction, the master's quantity, lots and
# position, the margin attributed to the order (and so the margin per lot), the master's decision
# text (it quotes ΔU and the calculator's margin). A client gets null for each and no master orders;
# its own figures are on its child orders.
STAFF_ONLY = (
    "master_capital",
    "attributed_margin",
    "fraction",
    "exit_ratio",
    "master_quantity",
    "master_lots",
    "master_position_before",
    "margin_source",
    "reason",
)


class MasterEventQuery(serializers.Serializer[Any]):
    day = serializers.DateField(required=False, help_text="Trading day (IST) the master order was seen.")
    instrument = serializers.CharField(
        required=False, max_length=80, help_text='"EXCHANGE:SYMBOL" or just "SYMBOL".'
    )
    kind = serializers.ChoiceField(choices=AllocationKind.choices, required=False)
    status = serializers.ChoiceField(choices=AllocationStatus.choices, required=False)


class MasterOrderOutput(serializers.ModelSerializer[MasterOrder]):
    class Meta:
        model = MasterOrder
        fields = (
            "id",
            "broker_order_id",
            "exchange",
            "tradingsymbol",
            "product",
            "side",
            "order_type",
            "variety",
            "validity",
            "quantity",
            "price",
            "trigger_price",
            "filled_quantity",
            "average_price",
            "status",
            "status_message",
            "placed_at",
            "first_seen_at",
        )
        read_only_fields = fields


class MasterEventOutput(serializers.ModelSerializer[Allocation]):
    """One master event: what the master did and what the engine decided for the children."""

    kind = serializers.ChoiceField(choices=AllocationKind.choices, read_only=True)
    status = serializers.ChoiceField(choices=AllocationStatus.choices, read_only=True)
    master_orders = MasterOrderOutput(many=True, read_only=True, help_text="Staff only: empty for a client.")
    child_orders_by_status = serializers.SerializerMethodField()

    class Meta:
        model = Allocation
        fields = (
            "id",
            "kind",
            "status",
            "group_key",
            "exchange",
            "tradingsymbol",
            "product",
            "side",
            "order_type",
            "price",
            "trigger_price",
            "master_quantity",
            "lot_size",
            "master_lots",
            "master_position_before",
            "fraction",
            "exit_ratio",
            "margin_source",
            "master_capital",
            "attributed_margin",
            "reason",
            "master_seen_at",
            "created_at",
            "decided_by",
            "decided_at",
            "master_orders",
            "child_orders_by_status",
        )
        read_only_fields = fields
        extra_kwargs = {
            name: {"allow_null": True, "help_text": "Staff only: null for a client."} for name in STAFF_ONLY
        }

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_child_orders_by_status(self, allocation: Allocation) -> dict[str, int]:
        counts: dict[int, dict[str, int]] = self.context.get("child_order_counts", {})
        return counts.get(allocation.pk, {})

    def to_representation(self, instance: Allocation) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not self.context.get("staff", False):
            for name in STAFF_ONLY:
                data[name] = None
            data["master_orders"] = []
        return data


class ChildOrderOutput(serializers.ModelSerializer[OrderMapping]):
    """One child order of a master event: where it stands, why, and how fast it was acknowledged."""

    status = serializers.ChoiceField(choices=MappingStatus.choices, read_only=True)
    child_name = serializers.CharField(source="child.display_name", read_only=True)
    child_user_id = serializers.CharField(source="child.broker_user_id", read_only=True)

    class Meta:
        model = OrderMapping
        fields = (
            "id",
            "child",
            "child_name",
            "child_user_id",
            "tag",
            "status",
            "slice_no",
            "wave",
            "exchange",
            "tradingsymbol",
            "product",
            "side",
            "order_type",
            "price",
            "trigger_price",
            "lots",
            "quantity",
            "capital",
            "target_margin",
            "reason_code",
            "reason",
            "broker_order_id",
            "broker_status",
            "filled_quantity",
            "average_price",
            "attempts",
            "created_at",
            "sent_at",
            "acked_at",
            "finished_at",
            "latency_ms",
        )
        read_only_fields = fields


class AllocationDetailOutput(serializers.Serializer[Any]):
    event = MasterEventOutput()
    child_orders = ChildOrderOutput(many=True)


class PositionOutput(serializers.Serializer[Any]):
    exchange = serializers.CharField()
    tradingsymbol = serializers.CharField()
    product = serializers.CharField()
    expected = serializers.IntegerField(help_text="What the engine's own filled orders put there.")
    actual = serializers.IntegerField(allow_null=True, help_text="The broker's position; null if unreadable.")
    difference = serializers.IntegerField(allow_null=True)
    lot_size = serializers.IntegerField()
    grade = serializers.ChoiceField(choices=[(g.value, g.value) for g in Grade])


class AccountPositionsOutput(serializers.Serializer[Any]):
    account = serializers.IntegerField()
    checked_at = serializers.DateTimeField()
    positions = PositionOutput(many=True)
