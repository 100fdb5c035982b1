"""The soak's master: random but seeded trades on the paper exchange, as a portfolio manager would.

Each call of `MasterDesk.act(rng)` picks one event from the master's current book (positions, open
LIMIT orders, prices) and carries it out through the paper exchange's services, exactly as orders
typed into Kite would appear to the engine. The book depends only on earlier events (fills and
margin checks are deterministic), so one seed gives one sequence of events, whatever the engine
and the faults do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from brokers.errors import BrokerError
from brokers.paper.models import OrderStatus, PaperInstrument, PaperOrder, PaperPosition
from brokers.paper.services import (
    paper_order_cancel,
    paper_order_modify,
    paper_order_place,
    paper_price_set,
)

MASTER = "MASTER"
EXCHANGE = "NFO"
PRODUCT = "NRML"
FUT = "NIFTY25DECFUT"
CALL = "NIFTY25DEC20000CE"
PUT = "NIFTY25DEC20000PE"
LOT = 75
# Largest master position (lots, either side) per instrument; options are only ever bought.
MAX_LOTS = {FUT: 6, CALL: 8, PUT: 8}

MAX_OPEN_LIMITS = 2  # resting master LIMIT orders at a time (each rests at every child too)
# kind: weight. A kind that does not fit the book (an exit while flat) falls back to an entry.
KINDS = {
    "entry": 24,
    "partial_exit": 12,
    "full_exit": 8,
    "hedge": 6,
    "limit_place": 12,
    "limit_modify": 8,
    "limit_cancel": 6,
    "price_move": 18,
}
# With the money faults (issue 11) the master also trades as DESIGN §3.7's paths need: a stop-loss
# and a target resting together (one fills, the master cancels the other), a resting LIMIT turned
# MARKET or resized, an order crossing zero.
MONEY_KINDS = {
    "bracket": 6,
    "limit_to_market": 4,
    "limit_quantity": 4,
    "cross_zero": 4,
}


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    detail: str  # what was done, deterministic for a seed (the schedule fingerprint hashes it)
    orders: int  # master orders placed by it


class MasterDesk:
    """The master's paper account and the instruments it trades."""

    def __init__(self, *, user_id: str = MASTER, money: bool = False) -> None:
        self.user_id = user_id
        self.kinds = {**KINDS, **MONEY_KINDS} if money else dict(KINDS)
        self.bracket: tuple[str, str] | None = None  # (stop-loss, target) order ids

    # --- the book -------------------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        held = dict.fromkeys(MAX_LOTS, 0)
        for symbol, quantity in PaperPosition.objects.filter(account__user_id=self.user_id).values_list(
            "tradingsymbol", "quantity"
        ):
            held[symbol] = held.get(symbol, 0) + quantity
        return held

    def open_limits(self) -> list[PaperOrder]:
        """Resting LIMIT orders, the bracket's target excepted (the bracket has its own events)."""
        return [
            o
            for o in PaperOrder.objects.filter(
                account__user_id=self.user_id, status=OrderStatus.OPEN, order_type="LIMIT"
            ).order_by("id")
            if not self.bracket or o.order_id not in self.bracket
        ]

    def live_orders(self) -> list[PaperOrder]:
        return list(
            PaperOrder.objects.filter(
                account__user_id=self.user_id, status__in=(OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING)
            ).order_by("id")
        )

    def price(self, symbol: str) -> Decimal:
        return PaperInstrument.objects.values_list("last_price", flat=True).get(
            exchange=EXCHANGE, tradingsymbol=symbol
        )

    # --- events ---------------------------------------------------------------------------------

    def act(self, rng: random.Random) -> Event:
        """Pick one event that fits the book and carry it out."""
        kind = rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
        event = getattr(self, f"_{kind}")(rng)
        return event if event is not None else self._entry(rng) or self._price_move(rng)

    def cancel_open_limits(self) -> int:
        """Quiet period: the master cancels its resting orders (LIMITs, a bracket). Returns how many."""
        live = self.live_orders()
        for order in live:
            paper_order_cancel(user_id=self.user_id, order_id=order.order_id)
        self.bracket = None
        return len(live)

    def flatten(self) -> int:
        """End of a money soak: the master closes every position at MARKET. Returns the orders."""
        self.cancel_open_limits()
        placed = 0
        for symbol, quantity in sorted(self.positions().items()):
            if quantity:
                self._place("SELL" if quantity > 0 else "BUY", symbol, abs(quantity) // LOT)
                placed += 1
        return placed

    def _place(
        self,
        side: str,
        symbol: str,
        lots: int,
        *,
        price: Decimal | None = None,
        trigger: Decimal | None = None,
    ) -> PaperOrder:
        order_type = "MARKET" if price is None and trigger is None else "LIMIT" if trigger is None else "SL-M"
        return paper_order_place(
            user_id=self.user_id,
            exchange=EXCHANGE,
            tradingsymbol=symbol,
            side=side,
            quantity=lots * LOT,
            product=PRODUCT,
            order_type=order_type,
            price=price,
            trigger_price=trigger,
        )

    def _room(self, symbol: str, side: str) -> int:
        """Lots the master may still add on `side` before its position cap (resting LIMITs count)."""
        held = self.positions()[symbol] // LOT
        for order in self.open_limits():
            if order.tradingsymbol == symbol:
                held += (order.quantity // LOT) * (1 if order.side == "BUY" else -1)
        cap = MAX_LOTS[symbol]
        room = cap - held if side == "BUY" else cap + held
        if symbol != FUT and side == "SELL":
            room = max(0, held)  # options: sell only what is held
        return max(0, room)

    def _entry(self, rng: random.Random) -> Event | None:
        symbol = rng.choices([FUT, CALL, PUT], weights=[3, 1, 1])[0]
        held = self.positions()[symbol]
        if symbol != FUT:
            side = "BUY"
        elif held and rng.random() < 0.7:
            side = "BUY" if held > 0 else "SELL"  # add to the position
        else:
            side = rng.choice(["BUY", "SELL"])
        lots = min(rng.randint(1, 3), self._room(symbol, side))
        if lots <= 0:
            return None
        order = self._place(side, symbol, lots)
        return Event("entry", f"{side} {lots} {symbol} -> {order.status}", 1)

    def _exit(self, rng: random.Random, *, full: bool) -> Event | None:
        held = {s: q for s, q in self.positions().items() if abs(q) >= (LOT if full else 2 * LOT)}
        if not held:
            return None
        symbol = rng.choice(sorted(held))
        lots = abs(held[symbol]) // LOT
        if not full:
            lots = rng.randint(1, lots - 1)
        side = "SELL" if held[symbol] > 0 else "BUY"
        order = self._place(side, symbol, lots)
        kind = "full_exit" if full else "partial_exit"
        return Event(kind, f"{side} {lots} {symbol} of {held[symbol] // LOT} -> {order.status}", 1)

    def _partial_exit(self, rng: random.Random) -> Event | None:
        return self._exit(rng, full=False)

    def _full_exit(self, rng: random.Random) -> Event | None:
        return self._exit(rng, full=True)

    def _hedge(self, rng: random.Random) -> Event | None:
        """BUY calls and SELL futures in one tick: a two-leg group (buy leg first at the children)."""
        lots = min(rng.randint(1, 2), self._room(CALL, "BUY"), self._room(FUT, "SELL"))
        if lots <= 0:
            return None
        call = self._place("BUY", CALL, lots)
        fut = self._place("SELL", FUT, lots)
        return Event("hedge", f"BUY {lots} {CALL} -> {call.status}, SELL {lots} {FUT} -> {fut.status}", 2)

    def _limit_place(self, rng: random.Random) -> Event | None:
        if len(self.open_limits()) >= MAX_OPEN_LIMITS:
            return None
        side = rng.choice(["BUY", "SELL"])
        lots = min(rng.randint(1, 2), self._room(FUT, side))
        if lots <= 0:
            return None
        ltp = self.price(FUT)
        away = Decimal(rng.randint(20, 80)) / Decimal(10000)  # 0.2% .. 0.8% from the market
        price = (ltp * (1 - away if side == "BUY" else 1 + away)).quantize(Decimal("1"))
        order = self._place(side, FUT, lots, price=price)
        return Event("limit_place", f"LIMIT {side} {lots} {FUT} @ {price} -> {order.status}", 1)

    def _limit_modify(self, rng: random.Random) -> Event | None:
        limits = self.open_limits()
        if not limits:
            return None
        order = rng.choice(limits)
        step = Decimal(rng.randint(-40, 40)) / Decimal(10000)
        price = (order.price * (1 + step)).quantize(Decimal("1"))
        try:
            status = paper_order_modify(user_id=self.user_id, order_id=order.order_id, price=price).status
        except BrokerError as exc:  # too many modifications, or no margin for the new price
            status = f"refused ({exc.code})"
        return Event("limit_modify", f"#{_seq(order)} {order.price} -> {price}: {status}", 0)

    def _limit_cancel(self, rng: random.Random) -> Event | None:
        limits = self.open_limits()
        if not limits:
            return None
        order = rng.choice(limits)
        paper_order_cancel(user_id=self.user_id, order_id=order.order_id)
        return Event("limit_cancel", f"#{_seq(order)} cancelled", 0)

    def _price_move(self, rng: random.Random) -> Event:
        """NIFTY moves by up to ±0.6%; the options follow (call up, put down); resting orders match."""
        ltp = self.price(FUT)
        move = Decimal(rng.randint(-60, 60)) / Decimal(10000)
        fut = (ltp * (1 + move)).quantize(Decimal("1"))
        delta = fut - ltp
        call = max(Decimal("5"), (self.price(CALL) + delta / 2).quantize(Decimal("1")))
        put = max(Decimal("5"), (self.price(PUT) - delta * Decimal("0.4")).quantize(Decimal("1")))
        for symbol, price in ((FUT, fut), (CALL, call), (PUT, put)):
            paper_price_set(exchange=EXCHANGE, tradingsymbol=symbol, price=price)
        detail = f"{FUT} {ltp} -> {fut}, {CALL} {call}, {PUT} {put}"
        if self.bracket is not None:
            live = {o.order_id for o in self.live_orders()}
            left = [order_id for order_id in self.bracket if order_id in live]
            if len(left) == 1:  # one leg filled: the master cancels the other (one-cancels-other by hand)
                paper_order_cancel(user_id=self.user_id, order_id=left[0])
                detail += ", bracket leg filled, the other cancelled"
            if len(left) <= 1:
                self.bracket = None
        return Event("price_move", detail, 0)

    # --- the money paths (issue 11) ----------------------------------------------------------------

    def _bracket(self, rng: random.Random) -> Event | None:
        """A stop-loss (SL-M) and a target (LIMIT) on the whole future position, resting together."""
        held = self.positions()[FUT] // LOT
        if not held or self.bracket is not None:
            return None
        ltp = self.price(FUT)
        away = Decimal(rng.randint(20, 60)) / Decimal(10000)
        side = "SELL" if held > 0 else "BUY"
        worse, better = (1 - away, 1 + away) if held > 0 else (1 + away, 1 - away)
        stop = (ltp * worse).quantize(Decimal("1"))
        target = (ltp * better).quantize(Decimal("1"))
        sl = self._place(side, FUT, abs(held), trigger=stop)
        tp = self._place(side, FUT, abs(held), price=target)
        self.bracket = (sl.order_id, tp.order_id)
        return Event(
            "bracket",
            f"{side} {abs(held)} {FUT} SL-M @ {stop} -> {sl.status}, LIMIT @ {target} -> {tp.status}",
            2,
        )

    def _limit_to_market(self, rng: random.Random) -> Event | None:
        limits = self.open_limits()
        if not limits:
            return None
        order = rng.choice(limits)
        sign = 1 if order.side == "BUY" else -1
        if abs(self.positions()[FUT] // LOT + sign * order.quantity // LOT) > MAX_LOTS[FUT]:
            return None
        try:
            status = paper_order_modify(
                user_id=self.user_id, order_id=order.order_id, order_type="MARKET"
            ).status
        except BrokerError as exc:
            status = f"refused ({exc.code})"
        return Event("limit_to_market", f"#{_seq(order)} LIMIT -> MARKET: {status}", 0)

    def _limit_quantity(self, rng: random.Random) -> Event | None:
        limits = self.open_limits()
        if not limits:
            return None
        order = rng.choice(limits)
        lots = order.quantity // LOT
        new = min(lots + rng.randint(-1, 2), lots + self._room(FUT, order.side))
        if new < 1 or new == lots:
            return None
        try:
            status = paper_order_modify(
                user_id=self.user_id, order_id=order.order_id, quantity=new * LOT
            ).status
        except BrokerError as exc:
            status = f"refused ({exc.code})"
        return Event("limit_quantity", f"#{_seq(order)} {lots} -> {new} lots: {status}", 0)

    def _cross_zero(self, rng: random.Random) -> Event | None:
        """An order past the position: the whole position closed and the rest opened the other way."""
        held = self.positions()[FUT] // LOT
        if not held or self.bracket is not None:
            return None
        side = "SELL" if held > 0 else "BUY"
        lots = abs(held) + min(rng.randint(1, 2), MAX_LOTS[FUT])
        order = self._place(side, FUT, lots)
        return Event("cross_zero", f"{side} {lots} {FUT} of {held} -> {order.status}", 1)


def _seq(order: PaperOrder) -> int:
    """The order's number within the master's account (its id also carries the date)."""
    return int(order.order_id[-7:])
