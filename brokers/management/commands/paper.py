"""`manage.py paper ...`: drive the paper exchange by hand (seed, accounts, prices, orders, books).

Thin: parses arguments, calls one service or selector, prints a table. Bad input is a one-line
CommandError and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.errors import BrokerError
from brokers.paper import selectors, services
from brokers.paper.models import IST, InstrumentType, PaperInstrument, PaperOrder, trading_date
from brokers.types import InstrumentKey, OrderType, Product
from pms.money import rupees

ORDER_TYPES = tuple(member.value for member in OrderType)
PRODUCTS = tuple(member.value for member in Product)


def _decimal(text: str, what: str, *, positive: bool = True) -> Decimal:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise CommandError(f"{what} must be a number, got {text!r}") from None
    if not value.is_finite():
        raise CommandError(f"{what} must be a finite number, got {text!r}")
    if positive and value <= 0:
        raise CommandError(f"{what} must be positive, got {text}")
    if value < 0:
        raise CommandError(f"{what} must not be negative, got {text}")
    return value


def _whole(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, got {text!r}") from None
    if value <= 0:
        raise CommandError(f"{what} must be positive, got {text}")
    return value


def _key(text: str) -> InstrumentKey:
    try:
        return InstrumentKey.parse(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def inr(value: Decimal) -> str:
    """Two decimals with Indian digit grouping, no ₹ (the table says rupees): 12,34,567.50."""
    return rupees(value, symbol=False)


def _price(value: Decimal) -> str:
    return inr(value) if value else "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: set[int]) -> str:
    """An aligned text table; columns listed in `right` are right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _expiry(instrument: PaperInstrument, today: date) -> str:
    """The expiry date, marked when the contract no longer trades (listed after the live ones)."""
    if instrument.expiry is None:
        return ""
    text = instrument.expiry.isoformat()
    return f"{text} (expired)" if instrument.expired_on(today) else text


def describe(order: PaperOrder) -> str:
    instrument = f"{order.exchange}:{order.tradingsymbol}"
    text = f"{order.order_id} {order.status}: {order.side} {order.quantity} {instrument}"
    if order.filled_quantity:
        text += f" filled @ {inr(order.average_price)}"
    if order.status_message:
        text += f" ({order.status_message})"
    return text


class Command(BaseCommand):
    help = "The paper exchange: seed instruments, open accounts, set prices, place orders, show books."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        seed = sub.add_parser("seed", help="Load fixture instruments and generate NIFTY/BANKNIFTY ones.")
        seed.add_argument(
            "--reset", action="store_true", help="Delete all paper orders, positions and instruments first."
        )
        seed.add_argument("--today", help="Trading date for expiries (YYYY-MM-DD; default today, IST).")

        opening = sub.add_parser("open", help="Open a paper account (an existing one keeps its cash).")
        opening.add_argument("user_id")
        opening.add_argument("--cash", required=True, help="Opening capital, e.g. 1000000.")

        cash = sub.add_parser("cash", help="Set an account's cash (opening capital).")
        cash.add_argument("user_id")
        cash.add_argument("amount")

        price = sub.add_parser("price", help="Set a last price and match resting orders.")
        price.add_argument("instrument", metavar="EXCHANGE:SYMBOL")
        price.add_argument("price")

        walk = sub.add_parser("walk", help="Random-walk every priced instrument.")
        walk.add_argument("--steps", default="1")
        walk.add_argument("--seed", default=None)
        walk.add_argument(
            "--max-step-pct", default="0.5", help="Largest move per step, percent (default 0.5)."
        )

        order = sub.add_parser("order", help="Place an order.")
        order.add_argument("user_id")
        order.add_argument("side", choices=("buy", "sell"), type=str.lower)
        order.add_argument("instrument", metavar="EXCHANGE:SYMBOL")
        order.add_argument("quantity", metavar="QTY")
        order.add_argument("--type", dest="order_type", default="MARKET", choices=ORDER_TYPES, type=str.upper)
        order.add_argument("--price")
        order.add_argument("--trigger")
        order.add_argument(
            "--product", choices=PRODUCTS, type=str.upper, help="Default NRML (F&O) or CNC (cash)."
        )
        order.add_argument("--lots", action="store_true", help="QTY is a number of lots.")
        order.add_argument("--tag", default="")

        modify = sub.add_parser("modify", help="Modify an open order.")
        modify.add_argument("user_id")
        modify.add_argument("order_id")
        modify.add_argument("--price")
        modify.add_argument("--trigger")
        modify.add_argument("--qty")
        modify.add_argument("--type", dest="order_type", choices=ORDER_TYPES, type=str.upper)

        cancel = sub.add_parser("cancel", help="Cancel an open order.")
        cancel.add_argument("user_id")
        cancel.add_argument("order_id")

        for name, text in (
            ("funds", "Show capital, used and available margin."),
            ("positions", "Show positions with P&L."),
            ("orders", "Show the order book."),
        ):
            sub.add_parser(name, help=text).add_argument("user_id")

        instruments = sub.add_parser(
            "instruments", help="List instruments: live ones first, then expired contracts (marked)."
        )
        instruments.add_argument("--underlying", help="e.g. NIFTY")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, f"do_{action}")(options)
        except BrokerError as exc:
            raise CommandError(exc.message) from None

    # --- writes -------------------------------------------------------------------------------

    def do_seed(self, options: dict[str, Any]) -> None:
        today = None
        if options["today"]:
            try:
                today = date.fromisoformat(options["today"])
            except ValueError:
                raise CommandError(f"--today must look like YYYY-MM-DD, got {options['today']!r}") from None
        result = services.paper_instruments_seed(today=today, reset=options["reset"])
        self.stdout.write(
            f"Instruments: {result.created} created, {result.updated} updated, "
            f"{result.expired_skipped} expired fixture contract(s) skipped."
        )
        for path in result.files_missing:
            self.stdout.write(f"Skipped (not found): {path}")

    def do_open(self, options: dict[str, Any]) -> None:
        account = services.paper_account_open(
            user_id=options["user_id"], cash=_decimal(options["cash"], "cash", positive=False)
        )
        self.stdout.write(f"Paper account {account.user_id}: cash {inr(account.cash)}")

    def do_cash(self, options: dict[str, Any]) -> None:
        account = services.paper_account_set_cash(
            user_id=options["user_id"], cash=_decimal(options["amount"], "cash", positive=False)
        )
        self.stdout.write(f"Paper account {account.user_id}: cash {inr(account.cash)}")

    def do_price(self, options: dict[str, Any]) -> None:
        key = _key(options["instrument"])
        moved = services.paper_price_set(
            exchange=key.exchange, tradingsymbol=key.tradingsymbol, price=_decimal(options["price"], "price")
        )
        self.stdout.write(f"{key} last price {options['price']}; {len(moved)} order(s) moved.")
        for order in moved:
            self.stdout.write(f"  {describe(order)}")

    def do_walk(self, options: dict[str, Any]) -> None:
        steps = _whole(options["steps"], "steps")
        seed = None
        if options["seed"] is not None:
            try:
                seed = int(options["seed"])
            except ValueError:
                raise CommandError(f"seed must be a whole number, got {options['seed']!r}") from None
        result = services.paper_random_walk(
            seed=seed, max_step_pct=_decimal(options["max_step_pct"], "max step"), steps=steps
        )
        moved = f"{result.prices_moved} price(s) moved, {len(result.orders)} order(s) moved"
        self.stdout.write(f"{result.steps} step(s): {moved}.")
        for order in result.orders:
            self.stdout.write(f"  {describe(order)}")

    def do_order(self, options: dict[str, Any]) -> None:
        key = _key(options["instrument"])
        instrument = selectors.paper_instrument_get(exchange=key.exchange, tradingsymbol=key.tradingsymbol)
        quantity = _whole(options["quantity"], "quantity")
        if options["lots"]:
            quantity *= max(instrument.lot_size, 1)
        product = options["product"] or ("CNC" if instrument.instrument_type == InstrumentType.EQ else "NRML")
        order = services.paper_order_place(
            user_id=options["user_id"],
            exchange=key.exchange,
            tradingsymbol=key.tradingsymbol,
            side=options["side"].upper(),
            quantity=quantity,
            product=product,
            order_type=options["order_type"],
            price=_decimal(options["price"], "price") if options["price"] is not None else None,
            trigger_price=_decimal(options["trigger"], "trigger") if options["trigger"] is not None else None,
            tag=options["tag"],
        )
        self.stdout.write(describe(order))

    def do_modify(self, options: dict[str, Any]) -> None:
        order = services.paper_order_modify(
            user_id=options["user_id"],
            order_id=options["order_id"],
            quantity=_whole(options["qty"], "quantity") if options["qty"] is not None else None,
            price=_decimal(options["price"], "price") if options["price"] is not None else None,
            trigger_price=_decimal(options["trigger"], "trigger") if options["trigger"] is not None else None,
            order_type=options["order_type"],
        )
        self.stdout.write(describe(order))

    def do_cancel(self, options: dict[str, Any]) -> None:
        order = services.paper_order_cancel(user_id=options["user_id"], order_id=options["order_id"])
        self.stdout.write(describe(order))

    # --- reads --------------------------------------------------------------------------------

    def do_funds(self, options: dict[str, Any]) -> None:
        detail = selectors.paper_funds_detail(user_id=options["user_id"])
        margin = detail.margin
        rows = [
            ("Cash (opening capital)", inr(detail.cash)),
            ("Realised P&L", inr(detail.realised_pnl)),
            ("Unrealised P&L", inr(detail.unrealised_pnl)),
            ("Capital", inr(detail.capital)),
            ("  Futures margin", inr(margin.futures)),
            ("  Short option margin", inr(margin.short_options)),
            ("  Option premium", inr(margin.option_premium)),
            ("  Equity margin", inr(margin.equity)),
            ("  Hedge benefit", inr(-margin.hedge_benefit)),
            ("Used", inr(detail.used)),
            ("Available", inr(detail.available)),
        ]
        self.stdout.write(render_table(("Funds", "INR"), rows, right={1}))

    def do_positions(self, options: dict[str, Any]) -> None:
        rows = []
        for position in selectors.paper_position_list(user_id=options["user_id"]):
            unrealised = selectors.unrealised_pnl(position)
            rows.append(
                (
                    f"{position.exchange}:{position.tradingsymbol}",
                    position.product,
                    position.quantity,
                    _price(position.average_price),
                    _price(position.instrument.last_price),
                    inr(position.realised_pnl),
                    inr(unrealised),
                    inr(position.realised_pnl + unrealised),
                )
            )
        headers = ("Instrument", "Product", "Qty", "Avg", "LTP", "Realised", "Unrealised", "P&L")
        self.stdout.write(render_table(headers, rows, right={2, 3, 4, 5, 6, 7}))

    def do_orders(self, options: dict[str, Any]) -> None:
        rows = [
            (
                order.order_id,
                order.placed_at.astimezone(IST).strftime("%H:%M:%S"),
                order.side,
                f"{order.exchange}:{order.tradingsymbol}",
                order.product,
                order.order_type,
                order.quantity,
                _price(order.price),
                _price(order.trigger_price),
                order.status,
                order.filled_quantity,
                _price(order.average_price),
                order.status_message,
            )
            for order in selectors.paper_order_list(user_id=options["user_id"])
        ]
        headers = (
            "Order id",
            "Time (IST)",
            "Side",
            "Instrument",
            "Product",
            "Type",
            "Qty",
            "Price",
            "Trigger",
            "Status",
            "Filled",
            "Avg",
            "Message",
        )
        self.stdout.write(render_table(headers, rows, right={6, 7, 8, 10, 11}))

    def do_instruments(self, options: dict[str, Any]) -> None:
        today = trading_date()
        rows = [
            (
                f"{i.exchange}:{i.tradingsymbol}",
                i.instrument_type,
                i.underlying,
                _expiry(i, today),
                _price(i.strike),
                i.lot_size,
                i.freeze_quantity or "",
                _price(i.last_price),
            )
            for i in selectors.paper_instrument_list(underlying=options["underlying"], today=today)
        ]
        headers = ("Instrument", "Type", "Underlying", "Expiry", "Strike", "Lot", "Freeze", "LTP")
        self.stdout.write(render_table(headers, rows, right={4, 5, 6, 7}))
