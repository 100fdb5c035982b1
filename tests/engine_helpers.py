"""A paper desk for engine tests: the DESIGN §3.6 master and children, and small helpers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from accounts.models import Account, CapitalMode
from brokers.paper.models import PaperPosition
from brokers.paper.services import paper_order_place, paper_price_set
from replication.models import MappingStatus, OrderMapping
from tests.factories import AccountFactory, MasterAccountFactory
from tests.paper_factories import NiftyIndexFactory, NiftyOptionFactory, PaperAccountFactory, PaperInstrumentFactory

FUT = "NIFTY25DECFUT"
CALL = "NIFTY25DEC20000CE"

# name: (cash, capital mode, fixed capital, multiplier)
CHILDREN = {
    "C1": (Decimal("500000"), CapitalMode.TOTAL, None, Decimal("1")),
    "C2": (Decimal("2000000"), CapitalMode.TOTAL, None, Decimal("1")),
    "C3": (Decimal("250000"), CapitalMode.TOTAL, None, Decimal("1")),
    "C4": (Decimal("3000000"), CapitalMode.FIXED, Decimal("1000000"), Decimal("0.5")),
    "C5": (Decimal("700000"), CapitalMode.TOTAL, None, Decimal("1")),
}


@dataclass
class Desk:
    master: Account
    children: dict[str, Account]

    def place(self, side: str, symbol: str, quantity: int, *, user: str = "MASTER", order_type: str = "MARKET",
              price: Decimal | None = None, trigger: Decimal | None = None, product: str = "NRML") -> str:
        order = paper_order_place(user_id=user, exchange="NFO", tradingsymbol=symbol, side=side, quantity=quantity,
                                  product=product, order_type=order_type, price=price, trigger_price=trigger)
        return order.order_id

    def positions(self, symbol: str) -> dict[str, int]:
        out = {}
        for name in self.children:
            pos = PaperPosition.objects.filter(account__user_id=name, instrument__tradingsymbol=symbol)
            out[name] = sum(p.quantity for p in pos)
        return out

    def child_orders(self, name: str) -> list[OrderMapping]:
        return list(OrderMapping.objects.filter(child=self.children[name]).exclude(status=MappingStatus.SKIPPED)
                    .order_by("id"))


def build_desk() -> Desk:
    NiftyIndexFactory()
    PaperInstrumentFactory()
    NiftyOptionFactory()
    NiftyOptionFactory(instrument_type="PE", last_price=Decimal("150.00"))
    PaperAccountFactory(user_id="MASTER", cash=Decimal("1000000"))
    master = MasterAccountFactory(broker_user_id="MASTER")
    children = {}
    for name, (cash, mode, fixed, mult) in CHILDREN.items():
        PaperAccountFactory(user_id=name, cash=cash)
        children[name] = AccountFactory(broker_user_id=name, display_name=name, capital_mode=mode,
                                        fixed_capital=fixed, multiplier=mult)
    return Desk(master, children)


def set_price(symbol: str, price: str) -> None:
    paper_price_set(exchange="NFO", tradingsymbol=symbol, price=Decimal(price))
