"""Today's P&L of what the engine replicated into each child, for the daily loss limit (DESIGN §3.3).

The loss limit guards the engine's own trading, so the figure comes from the engine's own child
orders, not from the broker's position P&L: a client's own trades and the overnight carry (bought
on an earlier day, its move since yesterday's close) are not the engine's loss today.

Per child and instrument, over the engine's orders (OrderMapping rows, staff corrective orders
excluded: see `allocation.positions.CORRECTIVE`) that filled during today's IST trading day:

    P&L = Σ sells (filled × average price) − Σ buys (filled × average price) + open × LTP

where `open` = bought − sold today (the open remainder of today's engine quantity), marked to the
child's LTP (its broker's `ltp()`, else the last price in its positions). When the figure cannot
be measured (a broker read fails, credentials cannot be read, a fill has no average price, no price
for an open remainder) the child's value is None: the caller blocks new entries (fail closed).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import DateTimeField
from django.db.models.functions import Coalesce

from accounts.crypto import CredentialDecryptError
from accounts.models import Account
from brokers.errors import BrokerError
from brokers.types import InstrumentKey, Side
from replication.clients import ClientCache
from replication.fanout import FanOut
from replication.models import OrderMapping

logger = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
ZERO = Decimal(0)
# What the caller records on an entry it does not send because the figure is None.
LOSS_UNMEASURABLE = "loss_unmeasurable"
LOSS_UNMEASURABLE_MESSAGE = (
    "today's P&L of the engine's positions could not be measured (broker prices or credentials "
    "unavailable), so the daily loss limit cannot be checked: no new entry; exits continue"
)


def ist_day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Start and end (aware UTC) of the IST trading day that contains `now` (aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    day = now.astimezone(IST).date()
    start = datetime.combine(day, time(0), IST).astimezone(UTC)
    return start, start + timedelta(days=1)


@dataclass(slots=True)
class _Book:
    """One child's engine fills today, per instrument: cash flow and the open remainder."""

    cash: Decimal = ZERO  # sells − buys, at their average prices
    open: dict[InstrumentKey, int] = field(default_factory=lambda: defaultdict(int))
    unpriced: list[str] = field(default_factory=list)  # fills without an average price


def _books(children: Sequence[int], start: datetime, end: datetime) -> dict[int, _Book]:
    # Read here, not at import: replication.allocation imports this module to apply the loss limit.
    from replication.allocation.positions import CORRECTIVE

    rows = (
        OrderMapping.objects.filter(child_id__in=list(children), filled_quantity__gt=0)
        .exclude(allocation__margin_source=CORRECTIVE)
        .annotate(done_at=Coalesce("finished_at", "acked_at", "sent_at", output_field=DateTimeField()))
        .filter(done_at__gte=start, done_at__lt=end)
        .values_list(
            "child_id", "tag", "exchange", "tradingsymbol", "side", "filled_quantity", "average_price"
        )
    )
    books: dict[int, _Book] = defaultdict(_Book)
    for child_id, tag, exchange, symbol, side, filled, average in rows:
        book = books[child_id]
        if not average or average <= 0:
            book.unpriced.append(tag)
            continue
        sign = 1 if side == Side.BUY else -1
        book.cash -= sign * filled * average
        book.open[InstrumentKey(exchange, symbol)] += sign * filled
    return books


def _prices(
    client_ltp: dict[InstrumentKey, Decimal], wanted: set[InstrumentKey]
) -> dict[InstrumentKey, Decimal]:
    return {k: p for k, p in client_ltp.items() if k in wanted and p and p > 0}


def _mark(child: Account, book: _Book, clients: ClientCache) -> Decimal | None:
    """The child's P&L today, reading prices from its broker only for an open remainder."""
    if book.unpriced:
        logger.warning(
            "child %s: fills without an average price (%s)", child.pk, ", ".join(book.unpriced[:5])
        )
        return None
    open_qty = {k: q for k, q in book.open.items() if q}
    if not open_qty:
        return book.cash
    wanted = set(open_qty)
    client = clients.get(child)
    try:
        prices = _prices(client.ltp(sorted(wanted, key=str)), wanted)
    except BrokerError as exc:
        logger.warning("LTP for child %s unavailable, trying its positions: %s", child.pk, exc)
        prices = {}
    if wanted - prices.keys():
        by_key = {p.key: p.last_price for p in client.positions() if p.last_price > 0}
        prices.update(_prices(by_key, wanted - prices.keys()))
    missing = wanted - prices.keys()
    if missing:
        logger.warning("child %s: no price for %s", child.pk, ", ".join(sorted(map(str, missing))))
        return None
    return book.cash + sum((q * prices[k] for k, q in open_qty.items()), ZERO)


def replicated_day_pnl(
    children: Sequence[Account], *, clients: ClientCache, fanout: FanOut, now: datetime
) -> dict[int, Decimal | None]:
    """Today's P&L (₹, negative is a loss) of the engine's replicated positions, per child id.

    None for a child whose figure could not be measured; never raises for one child's broker or
    credential error. A child with no engine fill today has 0 (no broker read).
    """
    if not children:
        return {}
    start, end = ist_day_bounds(now)
    books = _books([c.pk for c in children], start, end)
    readers = [c for c in children if c.pk in books and any(books[c.pk].open.values())]
    clients.warm(readers)

    def measure(child: Account) -> list[tuple[int, Decimal | None]]:
        book = books.get(child.pk)
        if book is None:
            return [(child.pk, ZERO)]
        try:
            return [(child.pk, _mark(child, book, clients))]
        except (BrokerError, CredentialDecryptError) as exc:
            logger.warning("today's P&L of child %s cannot be measured: %s", child.pk, exc)
            return [(child.pk, None)]
        except Exception:  # any other per-child failure: that child fails closed, the tick goes on
            logger.exception("today's P&L of child %s cannot be measured", child.pk)
            return [(child.pk, None)]

    return dict(fanout.map(measure, list(children)))
