"""Replication state: snapshots, master orders, allocations, child order mappings, audit, ticks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone

from accounts.models import Account
from brokers.types import OrderType, Product, Side, Validity
from pms.fastload import FastLoadMixin
from replication.sizing import Leg, LegPlan, MarginSource


class InvalidTransition(Exception):
    """A status change that the allowed-transitions map does not permit."""


class AppendOnlyQuerySet(models.QuerySet["ReplicationEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("replication events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("replication events are append-only")


class MarginSnapshot(models.Model):
    """One reading of U (used), A (available) and C (capital) for one account."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="snapshots")
    taken_at = models.DateTimeField(default=timezone.now, db_index=True)
    used_margin = models.DecimalField(max_digits=18, decimal_places=2)
    available_margin = models.DecimalField(max_digits=18, decimal_places=2)
    capital = models.DecimalField(max_digits=18, decimal_places=2)
    tick = models.ForeignKey("TickRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ("-taken_at", "-id")
        indexes = [models.Index(fields=("account", "-taken_at"), name="snapshot_account_recent")]

    def __str__(self) -> str:
        return f"{self.account_id} U={self.used_margin} A={self.available_margin} @ {self.taken_at:%H:%M:%S}"


class MasterOrder(models.Model):
    """An order seen in the master's order book (persisted, so a restart loses nothing)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="master_orders")
    broker_order_id = models.CharField(max_length=32)
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    side = models.CharField(max_length=4, choices=Side.choices())
    order_type = models.CharField(max_length=8, choices=OrderType.choices())
    variety = models.CharField(max_length=16, default="regular")
    validity = models.CharField(max_length=8, choices=Validity.choices(), default=Validity.DAY.value)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    trigger_price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    filled_quantity = models.PositiveIntegerField(default=0)
    average_price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    status = models.CharField(max_length=24)
    status_message = models.CharField(max_length=255, blank=True)
    tag = models.CharField(max_length=32, blank=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    filled_at = models.DateTimeField(null=True, blank=True)  # when the engine first saw it COMPLETE
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-first_seen_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=("account", "broker_order_id"), name="master_order_unique_id"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.exchange}:{self.tradingsymbol} ({self.broker_order_id})"


class MasterPosition(models.Model):
    """The master's net position per (exchange, tradingsymbol, product) as of the last tick."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="master_positions")
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    quantity = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("account", "exchange", "tradingsymbol", "product"), name="master_position_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol} {self.product} {self.quantity}"


class AllocationKind(models.TextChoices):
    OPEN = "open", "Opening"
    CLOSE = "close", "Closing"
    MODIFY = "modify", "Modification"
    CANCEL = "cancel", "Cancellation"
    CONVERGE = "converge", "Owed exit (convergence to entitlement)"


class AllocationStatus(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    PLANNED = "planned", "Planned"
    DISPATCHED = "dispatched", "Dispatched"
    REJECTED = "rejected", "Rejected by staff"
    FAILED = "failed", "Failed (nothing placed)"


class Allocation(FastLoadMixin, models.Model):
    """The engine's decision for one master event: a fraction of capital or an exit ratio."""

    master = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="allocations")
    tick = models.ForeignKey(
        "TickRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="allocations"
    )
    master_orders = models.ManyToManyField(MasterOrder, related_name="allocations", blank=True)
    group_key = models.CharField(
        max_length=64, db_index=True, help_text="Legs of one multi-leg group share it."
    )
    kind = models.CharField(max_length=8, choices=AllocationKind.choices)
    status = models.CharField(
        max_length=20, choices=AllocationStatus.choices, default=AllocationStatus.PLANNED
    )
    sized = models.BooleanField(
        default=False, help_text="Child intents created (set in the same transaction)."
    )

    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    side = models.CharField(max_length=4, choices=Side.choices())
    order_type = models.CharField(max_length=8, choices=OrderType.choices(), default=OrderType.MARKET.value)
    validity = models.CharField(max_length=8, choices=Validity.choices(), default=Validity.DAY.value)
    price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    trigger_price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    reference_price = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="Price for order-value caps: the order's price, or the LTP read for the event (MARKET).",
    )

    master_quantity = models.PositiveIntegerField()
    lot_size = models.PositiveIntegerField(default=1)
    freeze_quantity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Exchange freeze quantity: child orders above it are sliced."
    )
    master_lots = models.PositiveIntegerField(default=0)
    underlying = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="The instrument's underlying (NIFTY for every NIFTY future and option): what an "
        "allowed/blocked instrument filter may name instead of the contract.",
    )
    unit_lots = models.PositiveIntegerField(default=0, help_text="This leg's lots in one unit of the group.")
    master_position_before = models.IntegerField(default=0)
    replay_after = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A resting exit that filled after later allocations: the entitlement replay "
        "applies it after this allocation id (its position before is the one it filled against).",
    )

    master_capital = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    attributed_margin = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    margin_source = models.CharField(max_length=24, blank=True, help_text="delta_u or calculator")
    fraction = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    exit_ratio = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    reason = models.TextField(blank=True)

    master_seen_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    TRANSITIONS: ClassVar[dict[str, set[str]]] = {
        AllocationStatus.AWAITING_APPROVAL: {AllocationStatus.PLANNED, AllocationStatus.REJECTED},
        AllocationStatus.PLANNED: {AllocationStatus.DISPATCHED, AllocationStatus.FAILED},
        AllocationStatus.DISPATCHED: set(),
        AllocationStatus.REJECTED: set(),
        AllocationStatus.FAILED: set(),
    }

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.kind} {self.side} {self.exchange}:{self.tradingsymbol} ({self.status})"

    def set_status(self, new: str) -> None:
        if new != self.status and new not in self.TRANSITIONS.get(self.status, set()):
            raise InvalidTransition(f"allocation {self.pk}: {self.status} -> {new} is not allowed")
        self.status = new

    def sizing_plan(self) -> LegPlan:
        """The typed sizing plan this opening allocation stores (one leg of its group): sizing
        rebuilds the group's figures from these (`replication.sizing.group_plan`), never from
        figures recomputed here. Raises ValueError for a margin source sizing does not know."""
        leg = Leg(
            self.exchange,
            self.tradingsymbol,
            self.product,
            self.side,
            self.master_lots,
            self.lot_size,
            self.reference_price or self.price,  # order-value caps: LTP for MARKET (§3.3 step 7)
            order_margin=self.attributed_margin or Decimal(0),
            freeze_quantity=self.freeze_quantity,
            underlying=self.underlying,
        )
        return LegPlan(
            leg=leg,
            master_capital=self.master_capital or Decimal(0),
            attributed_margin=self.attributed_margin or Decimal(0),
            source=MarginSource(self.margin_source or MarginSource.DELTA_U),
            reason=self.reason,
            fraction=self.fraction or Decimal(0),
            unit_lots=self.unit_lots or self.master_lots,
        )

    def store_sizing_plan(self, plan: LegPlan) -> None:
        """Set the sizing columns from a leg's plan (`replication.sizing.leg_plans`); not saved.
        The reason is the caller's (it adds why a figure came from the calculator, or a hold)."""
        self.exchange, self.tradingsymbol = plan.leg.exchange, plan.leg.tradingsymbol
        self.product, self.side = plan.leg.product, plan.leg.side
        self.lot_size = plan.leg.lot_size
        self.master_lots = plan.leg.master_lots
        self.freeze_quantity = plan.leg.freeze_quantity
        self.underlying = plan.leg.underlying
        self.reference_price = plan.leg.price
        self.master_capital = plan.master_capital
        self.attributed_margin = plan.attributed_margin
        self.margin_source = plan.source.value
        self.fraction = plan.fraction
        self.unit_lots = plan.unit_lots


class MappingStatus(models.TextChoices):
    PLANNED = "planned", "Intent committed"
    SENDING = "sending", "Sending"
    UNKNOWN = "unknown", "Outcome unknown"
    OPEN = "open", "Open at broker"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected by broker"
    FAILED = "failed", "Not placed"
    SKIPPED = "skipped", "Skipped"
    DRY_RUN = "dry_run", "Dry run (not sent)"


FINAL_MAPPING_STATUSES = frozenset(
    {
        MappingStatus.FILLED,
        MappingStatus.CANCELLED,
        MappingStatus.REJECTED,
        MappingStatus.FAILED,
        MappingStatus.SKIPPED,
        MappingStatus.DRY_RUN,
    }
)


class OrderMapping(FastLoadMixin, models.Model):
    """One child order planned for one allocation: intent -> sent -> acknowledged -> final."""

    # No index of their own: `mapping_unique_per_child` leads with the allocation and
    # `mapping_child_instrument` with the child (every index is one more write per status change).
    allocation = models.ForeignKey(
        Allocation, on_delete=models.PROTECT, related_name="mappings", db_index=False
    )
    child = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="order_mappings", db_index=False
    )
    slice_no = models.PositiveSmallIntegerField(default=0, help_text="Slices above the freeze quantity.")
    wave = models.PositiveSmallIntegerField(
        default=0, help_text="0 = buy legs, 1 = sell legs sent after them."
    )
    tag = models.CharField(max_length=20)  # unique: `mapping_unique_tag`
    status = models.CharField(max_length=12, choices=MappingStatus.choices, default=MappingStatus.PLANNED)

    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    side = models.CharField(max_length=4, choices=Side.choices())
    order_type = models.CharField(max_length=8, choices=OrderType.choices(), default=OrderType.MARKET.value)
    validity = models.CharField(max_length=8, choices=Validity.choices(), default=Validity.DAY.value)
    price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    trigger_price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    lots = models.PositiveIntegerField(default=0)
    quantity = models.PositiveIntegerField(default=0)

    capital = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    target_margin = models.DecimalField(
        max_digits=30, decimal_places=10, null=True, blank=True, help_text="Unrounded: f × C × multiplier."
    )
    reason_code = models.CharField(max_length=40, blank=True)
    reason = models.TextField(blank=True)

    broker_order_id = models.CharField(max_length=32, blank=True)  # indexed: `mapping_broker_order_id`
    broker_status = models.CharField(max_length=24, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)
    average_price = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    epoch = models.PositiveIntegerField(default=0, help_text="Lease epoch of the leader that wrote it.")

    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Master order seen -> child ack."
    )
    updated_at = models.DateTimeField(auto_now=True)

    TRANSITIONS: ClassVar[dict[str, set[str]]] = {
        MappingStatus.PLANNED: {
            MappingStatus.SENDING,
            MappingStatus.SKIPPED,
            MappingStatus.DRY_RUN,
            MappingStatus.CANCELLED,
            MappingStatus.FAILED,
        },
        MappingStatus.SENDING: {
            MappingStatus.OPEN,
            MappingStatus.FILLED,
            MappingStatus.REJECTED,
            MappingStatus.FAILED,
            MappingStatus.UNKNOWN,
            MappingStatus.PLANNED,  # rate limited: nothing was placed, may be sent again
        },
        MappingStatus.UNKNOWN: {
            MappingStatus.OPEN,
            MappingStatus.FILLED,
            MappingStatus.CANCELLED,
            MappingStatus.REJECTED,
            MappingStatus.PLANNED,  # looked up by tag and proven absent
            MappingStatus.FAILED,
        },
        MappingStatus.OPEN: {
            MappingStatus.OPEN,
            MappingStatus.FILLED,
            MappingStatus.CANCELLED,
            MappingStatus.REJECTED,
        },
        MappingStatus.FILLED: set(),
        MappingStatus.CANCELLED: set(),
        MappingStatus.REJECTED: set(),
        MappingStatus.FAILED: set(),
        MappingStatus.SKIPPED: set(),
        MappingStatus.DRY_RUN: set(),
    }

    class Meta:
        ordering = ("allocation_id", "child_id", "slice_no")
        constraints = [
            models.UniqueConstraint(
                fields=("allocation", "child", "slice_no"), name="mapping_unique_per_child"
            ),
            # A constraint, not `unique=True`: on PostgreSQL that also made a LIKE index
            # (varchar_pattern_ops) nothing queries, one more write for every intent.
            models.UniqueConstraint(fields=("tag",), name="mapping_unique_tag"),
        ]
        indexes = [
            models.Index(fields=("status",), name="mapping_status"),
            models.Index(fields=("broker_order_id",), name="mapping_broker_order_id"),
            models.Index(
                fields=("child", "exchange", "tradingsymbol", "product"), name="mapping_child_instrument"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tag}: {self.side} {self.quantity} {self.exchange}:{self.tradingsymbol} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_MAPPING_STATUSES

    def can_move_to(self, new: str) -> bool:
        return new in self.TRANSITIONS.get(self.status, set())

    def set_status(self, new: str) -> None:
        if not self.can_move_to(new):
            raise InvalidTransition(f"mapping {self.tag}: {self.status} -> {new} is not allowed")
        self.status = new


class Entitlement(models.Model):
    """What one child is entitled to hold in one instrument (DESIGN §3.7), and whether it holds it.

    `quantity` (E) is recomputed from the allocations and the child's entry orders
    (`replication.entitlement`); `held` (H) is the engine-placed position at the broker as last
    computed. A row is `settled` once H has converged to E with nothing in flight; until then the
    convergence stage looks at it every tick and sends the exit still owed when the child can trade.
    """

    child = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="entitlements")
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    quantity = models.IntegerField(default=0, help_text="Entitled quantity E (signed).")
    held = models.IntegerField(default=0, help_text="Replicated position H (signed) when last computed.")
    lot_size = models.PositiveIntegerField(default=1)
    settled = models.BooleanField(default=False)
    hold_code = models.CharField(max_length=40, blank=True, help_text="Why an owed exit is held back.")
    hold_reason = models.TextField(blank=True)
    owed_since = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Owed-exit orders sent since it was owed.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="After a failed owed exit: not before this (backoff)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("child", "exchange", "tradingsymbol", "product"), name="entitlement_unique"
            ),
        ]
        indexes = [models.Index(fields=("settled",), name="entitlement_settled")]

    def __str__(self) -> str:
        where = f"{self.exchange}:{self.tradingsymbol} {self.product}"
        return f"{self.child_id} {where} E={self.quantity} H={self.held}"


class EventKind(models.TextChoices):
    """Every kind of `ReplicationEvent`: the audit log's one vocabulary.

    Engine kinds are `snake_case` (one per outcome); staff and account kinds are `<subject>.<verb>`.
    Write rows only through `replication.services` (`audit`, `audit_row`, `audit_rows`), which
    refuse a kind that is not a member.
    """

    # master and ticks
    MASTER_READ_FAILED = "master_read_failed", "Master read failed"
    MASTER_ORDER_REJECTED = "master_order_rejected", "Master order rejected"
    EVENT_SKIPPED = "event_skipped", "Master event skipped"
    # allocations
    ALLOCATION_CREATED = "allocation_created", "Allocation created"
    ALLOCATION_HELD = "allocation_held", "Allocation held for approval"
    ALLOCATION_SIZED = "allocation_sized", "Allocation sized"
    ALLOCATION_APPROVED = "allocation_approved", "Allocation approved"
    ALLOCATION_REJECTED = "allocation_rejected", "Allocation rejected"
    CORRECTIVE_ORDER_PLANNED = "corrective_order_planned", "Corrective order planned"
    CHILD_FLATTENED = "child_flattened", "Child flattened"
    EXIT_HELD = "exit_held", "Owed exit held"
    EXIT_OWED_PLANNED = "exit_owed_planned", "Owed exit planned"
    # intents (order mappings): sending
    INTENT_WITHDRAWN = "intent_withdrawn", "Intent withdrawn"
    GROUP_INCOMPLETE = "group_incomplete", "Group incomplete"
    SENT = "sent", "Sent"
    SEND_HELD = "send_held", "Send held"
    SEND_WITHHELD = "send_withheld", "Send withheld"
    SEND_DEFERRED = "send_deferred", "Send deferred"
    SEND_FAILED = "send_failed", "Send failed"
    SEND_REJECTED = "send_rejected", "Send rejected"
    SEND_UNKNOWN = "send_unknown", "Send outcome unknown"
    # intents: follow-up
    ORDER_UPDATE = "order_update", "Order update"
    FOUND_BY_TAG = "found_by_tag", "Found by tag"
    ABSENT_RESEND = "absent_resend", "Absent, sent again"
    RECOVERED_UNKNOWN = "recovered_unknown", "Unknown outcome recovered"
    CANCEL_HELD = "cancel_held", "Cancel held"
    CANCEL_SENT = "cancel_sent", "Cancel sent"
    CANCEL_FAILED = "cancel_failed", "Cancel failed"
    MODIFY_HELD = "modify_held", "Modify held"
    MODIFY_SENT = "modify_sent", "Modify sent"
    MODIFY_FAILED = "modify_failed", "Modify failed"
    RECONCILIATION_DRIFT = "reconciliation_drift", "Reconciliation drift"
    # the engine's state on accounts
    BREAKER_TRIPPED = "breaker_tripped", "Breaker tripped"
    # One name for "this account must log in again" (was also written as `account_needs_login`;
    # migration 0005 renames those rows).
    ACCOUNT_LOGIN_NEEDED = "account.login_needed", "Account needs login"
    # accounts (staff and owner actions)
    ACCOUNT_LINKED = "account.linked", "Account linked"
    ACCOUNT_UPDATED = "account.updated", "Account updated"
    ACCOUNT_UNLINKED = "account.unlinked", "Account unlinked"
    ACCOUNT_CLAIM_PROVEN = "account.claim_proven", "Claim proven"
    ACCOUNT_CLAIM_VOUCHED = "account.claim_vouched", "Claim vouched"
    ACCOUNT_CLAIM_DROPPED = "account.claim_dropped", "Claim dropped"
    ACCOUNT_CONSENT_GIVEN = "account.consent_given", "Consent given"
    ACCOUNT_CONSENT_WITHDRAWN = "account.consent_withdrawn", "Consent withdrawn"
    ACCOUNT_CREDENTIALS_CHANGED = "account.credentials_changed", "Credentials changed"
    ACCOUNT_SETTINGS_UPDATED = "account.settings_updated", "Settings updated"
    ACCOUNT_STATUS_CHANGED = "account.status_changed", "Status changed"
    ACCOUNT_BROKER_SWITCHED = "account.broker_switched", "Broker switched"
    ACCOUNT_MASTER_PROMOTED = "account.master_promoted", "Promoted to master"
    ACCOUNT_MASTER_DEMOTED = "account.master_demoted", "Demoted from master"
    # engine controls and sign-in security
    ENGINE_CONTROL_CHANGED = "engine.control_changed", "Engine control changed"
    LOGIN_FAILED = "login.failed", "Sign-in failed"
    LOGIN_LOCKED = "login.locked", "Sign-in locked out"
    LOGIN_UNLOCKED = "login.unlocked", "Sign-in lock-out lifted"
    # operator alerts (replication.alerts)
    ALERT_SENT = "alert_sent", "Alert sent"
    ALERT_GAVE_UP = "alert_gave_up", "Alert delivery given up"


# Old spellings of a kind, still found in rows written before migration 0005 (read-side only).
LEGACY_EVENT_KINDS: dict[str, EventKind] = {"account_needs_login": EventKind.ACCOUNT_LOGIN_NEEDED}


class ReplicationEvent(models.Model):
    """Append-only audit row. Written in the same transaction as the change it records."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=40, db_index=True, choices=EventKind.choices)
    actor = models.CharField(max_length=150, default="engine")
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    allocation = models.ForeignKey(
        Allocation, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    mapping = models.ForeignKey(
        OrderMapping, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    master_order = models.ForeignKey(
        MasterOrder, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind} {self.message[:60]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise PermissionError("replication events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("replication events are append-only")


class TickRun(models.Model):
    """One pass of the orchestrator, for the dashboard."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        ERROR = "error", "Error"
        NOT_LEADER = "not_leader", "Not leader"

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    holder = models.CharField(max_length=120, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("-started_at", "-id")

    def __str__(self) -> str:
        return f"tick {self.pk} {self.outcome} {self.duration_ms}ms"


class OrchestratorLease(models.Model):
    """Single-leader lease. Taking it over bumps the epoch; writes carry the epoch they were made under."""

    name = models.CharField(max_length=40, unique=True, default="orchestrator")
    holder = models.CharField(max_length=120, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or '-'} epoch {self.epoch}"


class EngineControl(models.Model):
    """Global kill switches (one row)."""

    paused = models.BooleanField(default=False, help_text="No new entries; exits and sync continue.")
    halted = models.BooleanField(default=False, help_text="Nothing is sent.")
    dry_run = models.BooleanField(default=False, help_text="Plan and record, send nothing.")
    approval_mode = models.BooleanField(default=False, help_text="Allocations wait for a staff approval.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = "engine control"

    def __str__(self) -> str:
        flags = [n for n in ("paused", "halted", "dry_run", "approval_mode") if getattr(self, n)]
        return "engine: " + (", ".join(flags) or "running")
