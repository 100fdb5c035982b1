"""Replication API (/api/v1/): the master event log, one event's child orders, expected vs actual.

Staff see everything. A client sees the master events that touched one of its accounts, only its
own child orders in them, none of the master's figures (capital, fraction, quantity, margin), and
the positions of its own accounts.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import ApiPagination, ApiView, errors, validated
from accounts.api.exceptions import ApiError
from accounts.api.parsers import LimitedJSONParser
from accounts.api.permissions import is_staff
from accounts.api.selectors import account_get_visible
from accounts.models import Account
from replication.api.selectors import (
    allocation_child_orders,
    allocation_get_visible,
    child_order_counts,
    lot_sizes_for,
    master_event_list,
)
from replication.api.serializers import (
    AccountPositionsOutput,
    AllocationDetailOutput,
    MasterEventOutput,
    MasterEventQuery,
)
from replication.clients import ClientCache
from replication.models import Allocation
from replication.reconciliation import reconcile

TAG = "replication"


def _not_found(what: str) -> ApiError:
    return ApiError("not_found", f"No such {what}.", status_code=status.HTTP_404_NOT_FOUND)


class MasterEventListView(ListAPIView[Allocation]):
    """Master events, newest first, each with its master orders and child order counts by status.

    Filters: `day` (IST trading day), `instrument` ("NFO:NIFTY25DECFUT" or "NIFTY25DECFUT"),
    `kind`, `status`.
    """

    serializer_class = MasterEventOutput
    pagination_class = ApiPagination
    parser_classes = [LimitedJSONParser]
    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> Any:
        query = validated(MasterEventQuery, self.request.query_params)
        instrument = query.get("instrument", "").strip().upper()
        exchange, _, symbol = instrument.rpartition(":")
        return master_event_list(
            user=self.request.user,
            day=query.get("day"),
            exchange=exchange or None,
            tradingsymbol=symbol or None,
            kind=query.get("kind"),
            status=query.get("status"),
        )

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "staff": is_staff(self.request.user)}

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        rows = args[0] if args else None
        if rows is not None and kwargs.get("many"):
            rows = list(rows)
            counts = child_order_counts(user=self.request.user, allocation_ids=[row.pk for row in rows])
            kwargs["context"] = {**self.get_serializer_context(), "child_order_counts": counts}
            return self.serializer_class(rows, *args[1:], **kwargs)
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        tags=[TAG],
        operation_id="replication_events_list",
        parameters=[MasterEventQuery],
        responses={200: MasterEventOutput(many=True), **errors(400)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class AllocationDetailView(ApiView):
    """One master event with every child order: status, reason and latency (master seen → child ack)."""

    @extend_schema(
        tags=[TAG],
        operation_id="replication_allocations_retrieve",
        responses={200: AllocationDetailOutput, **errors(404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        try:
            allocation = allocation_get_visible(user=request.user, pk=pk)
        except Allocation.DoesNotExist:
            raise _not_found("allocation") from None
        orders = allocation_child_orders(user=request.user, allocation=allocation)
        counts = child_order_counts(user=request.user, allocation_ids=[allocation.pk])
        context = {"staff": is_staff(request.user), "child_order_counts": counts}
        body = AllocationDetailOutput({"event": allocation, "child_orders": orders}, context=context)
        return Response(body.data)


class AccountPositionsView(ApiView):
    """Expected (the engine's own filled orders) vs actual (the broker) for one account.

    Reads the broker: a broker that cannot be read gives `actual: null` and grade `unknown`. A
    pending claim (not yet proven by a broker login) is refused with 409 `account_pending`.
    """

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_positions",
        responses={200: AccountPositionsOutput, **errors(404, 409)},
    )
    def get(self, request: Request, pk: int) -> Response:
        try:
            account = account_get_visible(user=request.user, pk=pk)
        except Account.DoesNotExist:
            raise _not_found("account") from None
        if account.is_pending:
            raise ApiError(
                "account_pending",
                "this account is a claim not yet proven by a broker login; its broker is not read "
                "until the owner logs in to it",
                status_code=status.HTTP_409_CONFLICT,
            )
        drifts = reconcile(
            children=[account], clients=ClientCache(), lot_sizes=lot_sizes_for(account=account)
        )
        body = {
            "account": account.pk,
            "checked_at": timezone.now(),
            "positions": [
                {
                    "exchange": d.exchange,
                    "tradingsymbol": d.tradingsymbol,
                    "product": d.product,
                    "expected": d.expected,
                    "actual": d.actual,
                    "difference": d.difference,
                    "lot_size": d.lot_size,
                    "grade": d.grade.value,
                }
                for d in drifts
            ],
        }
        return Response(AccountPositionsOutput(body).data)
