"""Reads of the client portal: a user's own accounts and, per account, today's copy trades, the
positions the engine entitles it to against what it holds, and the P&L of the replicated trades.

Every read starts from `portal_accounts(user=...)`: a user's own accounts only (`owner`), whoever
the user is; another client's account looks absent (the views answer 404). Engine rows are read
through their models and `replication.selectors` (accounts' import contract); nothing here writes.

Times are aware UTC; "today" is the trading day in DISPLAY_TIME_ZONE (Asia/Kolkata).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, DateTimeField, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Broker
from accounts.portal.words import REDUCING, reason_words
from accounts.services.credentials import account_broker_client
from brokers.errors import BrokerError
from brokers.types import InstrumentKey, Side
from replication.models import Entitlement, MappingStatus, MasterOrder, OrderMapping
from replication.selectors import entitled, replicated_positions

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
CENTS = Decimal("0.01")
# `Allocation.margin_source` of a staff corrective order (replication.entitlement.CORRECTIVE): it
# brings the broker back to the replicated position and is not part of it (nor of its P&L).
CORRECTIVE = "corrective"


def display_zone() -> ZoneInfo:
    return ZoneInfo(settings.DISPLAY_TIME_ZONE)


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the trading day (DISPLAY_TIME_ZONE) that contains `now` (aware)."""
    zone = display_zone()
    start = datetime.combine(now.astimezone(zone).date(), time.min, tzinfo=zone)
    return start, start + timedelta(days=1)


# --- Accounts -----------------------------------------------------------------------------------


def portal_accounts(*, user: AbstractBaseUser | AnonymousUser, now: datetime) -> QuerySet[Account]:
    """The user's own accounts (staff included: the portal is nobody's window on other accounts),
    each with `trades_today`: how many orders the engine made for it today (one query)."""
    if user.pk is None:
        return Account.objects.none()
    start, end = day_bounds(now)
    today = Q(order_mappings__created_at__gte=start, order_mappings__created_at__lt=end)
    return (
        Account.objects.filter(owner_id=user.pk)
        .defer(*Account.SECRET_FIELDS)
        .annotate(trades_today=Count("order_mappings", filter=today))
        .order_by("pk")
    )


def portal_account_get(*, user: AbstractBaseUser | AnonymousUser, pk: int, lock: bool = False) -> Account:
    """One of the user's own accounts; Account.DoesNotExist for anyone else's (or none)."""
    accounts = Account.objects.filter(owner_id=user.pk) if user.pk is not None else Account.objects.none()
    if lock:
        accounts = accounts.select_for_update()
    return accounts.get(pk=pk)


def login_due(account: Account, now: datetime) -> bool:
    """Whether the account's broker needs today's login: a Kite account with no live session (none
    stored, expired, or the engine found it dead), or a claim a first login has yet to prove."""
    if account.broker != Broker.KITE or account.status == AccountStatus.DISABLED:
        return False
    if account.status == AccountStatus.NEEDS_LOGIN or account.is_pending:
        return True
    expires = account.token_expires_at
    return account.token_obtained_at is None or (expires is not None and expires <= now)


# --- Today's copy trades ------------------------------------------------------------------------


def master_average_price(orders: list[MasterOrder]) -> Decimal | None:
    """Fill-weighted average price of the master's orders behind one master event."""
    filled = [(o.filled_quantity, o.average_price) for o in orders if o.filled_quantity and o.average_price]
    quantity = sum(q for q, _ in filled)
    if not quantity:
        return None
    return (sum((Decimal(q) * p for q, p in filled), ZERO) / quantity).quantize(CENTS)


def slippage(side: str, master_price: Decimal | None, child_price: Decimal | None) -> Decimal | None:
    """Per unit against the master's fill; positive is worse for the client (paid more, sold for less)."""
    if not master_price or not child_price:
        return None
    diff = child_price - master_price
    return (diff if side == Side.BUY else -diff).quantize(CENTS)


@dataclass(frozen=True, slots=True)
class CopyTrade:
    """One of the client's orders (or skips) and the master event behind it."""

    order: OrderMapping
    master_side: str
    master_quantity: int
    master_price: Decimal | None  # the master's average fill, None until it filled
    fill_price: Decimal | None  # the client's average fill, None until it filled
    slippage: Decimal | None  # per unit, positive = worse for the client
    outcome: str  # "skipped", "reduced" or "" (copied in full)
    reason: str  # plain words ("" when there is nothing to explain)
    reason_code: str

    @property
    def instrument(self) -> str:
        return f"{self.order.exchange}:{self.order.tradingsymbol}"


def _outcome(order: OrderMapping) -> str:
    if order.status == MappingStatus.SKIPPED:
        return "skipped"
    if order.reason_code in REDUCING and order.quantity > 0:
        return "reduced"
    return ""


def copy_trades_today(*, account: Account, now: datetime) -> list[CopyTrade]:
    """The account's orders the engine created today (newest first), each with its master event."""
    start, end = day_bounds(now)
    orders = (
        OrderMapping.objects.filter(child=account, created_at__gte=start, created_at__lt=end)
        .select_related("allocation")
        .prefetch_related(
            Prefetch(
                "allocation__master_orders",
                queryset=MasterOrder.objects.order_by("id"),
                to_attr="master_order_list",
            )
        )
        .order_by("-created_at", "-id")
    )
    trades = []
    for order in orders:
        allocation = order.allocation
        master_price = master_average_price(getattr(allocation, "master_order_list", []))
        fill_price = order.average_price if order.filled_quantity and order.average_price else None
        explained = bool(order.reason_code) and order.status != MappingStatus.DRY_RUN
        trades.append(
            CopyTrade(
                order=order,
                master_side=allocation.side,
                master_quantity=allocation.master_quantity,
                master_price=master_price,
                fill_price=fill_price,
                slippage=slippage(order.side, master_price, fill_price),
                outcome=_outcome(order),
                reason=reason_words(order.reason_code, order.reason) if explained else order.reason,
                reason_code=order.reason_code,
            )
        )
    return trades


# --- Positions: entitled against held -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One instrument: what the rules entitle the client to hold (E) and what the engine's own
    orders hold there now (H), with what is still working and any exit still owed."""

    exchange: str
    tradingsymbol: str
    product: str
    entitled: int
    held: int
    pending_buy: int
    pending_sell: int
    owed_since: datetime | None
    hold_reason: str

    @property
    def instrument(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def matches(self) -> bool:
        return self.entitled == self.held and not (self.pending_buy or self.pending_sell)


def positions_entitled_held(*, account: Account) -> list[PositionRow]:
    """Every instrument where the client is entitled to, holds, or has working engine orders.

    H and the working orders come from `replication.selectors.replicated_positions`; E is the
    engine's own replay of DESIGN §3.7 (`replication.selectors.entitled`), the figure the
    convergence stage steers H to. The engine's entitlement row adds since when an exit has been
    owed and why it waits.
    """
    held = {
        key[1:]: value for key, value in replicated_positions(children=[account.pk]).items() if any(value)
    }
    rows = {
        (e.exchange, e.tradingsymbol, e.product): e
        for e in Entitlement.objects.filter(child=account).order_by("exchange", "tradingsymbol", "product")
    }
    instruments = set(held) | set(rows)
    # The figure convergence steers to: entries and the master's exits as far as they filled (a
    # stop-loss resting at the master takes nothing away yet; an entry working shows as working).
    e_now = {key[1:]: q for key, q in entitled(instruments, children=[account.pk], in_flight=False).items()}
    out = []
    for key in sorted(set(held) | set(e_now)):
        h, pending_buy, pending_sell = held.get(key, (0, 0, 0))
        row = rows.get(key)
        owed = row is not None and not row.settled
        out.append(
            PositionRow(
                *key,
                entitled=e_now.get(key, 0),
                held=h,
                pending_buy=pending_buy,
                pending_sell=pending_sell,
                owed_since=row.owed_since if owed and row else None,
                hold_reason=row.hold_reason if owed and row else "",
            )
        )
    return out


# --- P&L of the replicated trades ---------------------------------------------------------------


@dataclass(slots=True)
class _Book:
    cash: Decimal = ZERO  # sells − buys at their average prices
    open: dict[InstrumentKey, int] = field(default_factory=lambda: defaultdict(int))
    unpriced: int = 0  # fills without an average price


@dataclass(frozen=True, slots=True)
class ReplicatedPnl:
    """P&L (₹, negative is a loss) of the engine's own fills for this client: today (the trading
    day's fills, their open remainder marked to the last price) and since the account was linked
    (every fill, what is still open marked to the last price). None when it cannot be measured."""

    today: Decimal | None
    since_linking: Decimal | None
    linked_at: datetime
    open_marked: bool  # an open quantity was valued at the broker's last price
    error: str = ""


def _books(account: Account, start: datetime | None) -> _Book:
    rows = (
        OrderMapping.objects.filter(child=account, filled_quantity__gt=0)
        .exclude(allocation__margin_source=CORRECTIVE)
        .annotate(done_at=Coalesce("finished_at", "acked_at", "sent_at", output_field=DateTimeField()))
    )
    if start is not None:
        rows = rows.filter(done_at__gte=start, done_at__lt=start + timedelta(days=1))
    book = _Book()
    for exchange, symbol, side, filled, average in rows.values_list(
        "exchange", "tradingsymbol", "side", "filled_quantity", "average_price"
    ):
        if not average or average <= 0:
            book.unpriced += 1
            continue
        sign = 1 if side == Side.BUY else -1
        book.cash -= sign * filled * average
        book.open[InstrumentKey(exchange, symbol)] += sign * filled
    return book


def _last_prices(account: Account, wanted: set[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
    """Last prices from the client's broker (its LTP, else the positions' last price). A broker
    call: never inside a transaction. Raises BrokerError / CredentialDecryptError."""
    client = account_broker_client(account=account)
    keys = sorted(wanted, key=str)
    try:
        prices = {k: p for k, p in client.ltp(keys).items() if k in wanted and p and p > 0}
    except BrokerError as exc:
        logger.warning("portal: LTP for account %s unavailable, trying its positions: %s", account.pk, exc)
        prices = {}
    if wanted - prices.keys():
        for position in client.positions():
            if position.key in wanted and position.key not in prices and position.last_price > 0:
                prices[position.key] = position.last_price
    return prices


def replicated_pnl(*, account: Account, now: datetime) -> ReplicatedPnl:
    """Today's and since-linking P&L of what the engine replicated into `account` (see ReplicatedPnl).

    The broker is asked for last prices only when a quantity is still open; a broker or credential
    failure leaves the figures that need a price as None, with the reason.
    """
    start, _ = day_bounds(now)
    today, total = _books(account, start), _books(account, None)
    open_today = {k: q for k, q in today.open.items() if q}
    open_total = {k: q for k, q in total.open.items() if q}
    wanted = set(open_today) | set(open_total)
    prices: dict[InstrumentKey, Decimal] = {}
    error = ""
    if wanted:
        try:
            prices = _last_prices(account, wanted)
        except (BrokerError, CredentialDecryptError) as exc:
            logger.warning("portal: prices for account %s unavailable: %s", account.pk, exc)
            error = "last prices are unavailable from your broker just now"
        if not error and wanted - prices.keys():
            error = "no last price for " + ", ".join(sorted(map(str, wanted - prices.keys())))

    def value(book: _Book, open_qty: dict[InstrumentKey, int]) -> Decimal | None:
        if book.unpriced or any(k not in prices for k in open_qty):
            return None
        return (book.cash + sum((q * prices[k] for k, q in open_qty.items()), ZERO)).quantize(CENTS)

    if total.unpriced and not error:
        error = "a fill has no average price yet"
    return ReplicatedPnl(
        today=value(today, open_today),
        since_linking=value(total, open_total),
        linked_at=account.created_at,
        open_marked=bool(wanted),
        error=error,
    )
