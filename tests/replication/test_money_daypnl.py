"""Issue 11 defect 6: the daily loss limit fails closed and measures the engine's own P&L today.

Through the engine: a child with a daily loss limit whose P&L cannot be measured gets no new entry
(SKIPPED, `loss_unmeasurable`); a client's own trades and the overnight carry do not stop entries.
Directly: `replication.daypnl.replicated_day_pnl` over the paper desk of DESIGN §3.6 (future at
₹20,000, lot 75).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from brokers.paper.models import PaperOrder
from replication.clients import ClientCache
from replication.daypnl import LOSS_UNMEASURABLE, ist_day_bounds, replicated_day_pnl
from replication.fanout import FanOut
from replication.models import Allocation, AllocationKind, MappingStatus, OrderMapping
from replication.services import reconciliation_correct
from tests.dashboard_helpers import FUT, close_by_hand, replicate_entry
from tests.engine_helpers import set_price

pytestmark = pytest.mark.django_db


def _pnl(desk, *names, now=None, clients=None):
    children = [desk.children[n] for n in names]
    result = replicated_day_pnl(
        children, clients=clients or ClientCache(), fanout=FanOut(workers=0), now=now or timezone.now()
    )
    return {n: result[desk.children[n].pk] for n in names}


def _limit(child, amount: str) -> None:
    child.daily_loss_limit = Decimal(amount)
    child.save(update_fields=["daily_loss_limit"])


def _orders(user: str) -> int:
    return PaperOrder.objects.filter(account__user_id=user, tradingsymbol=FUT, side="BUY").count()


def _latest_entry_mapping(child) -> OrderMapping:
    alloc = Allocation.objects.filter(kind=AllocationKind.OPEN).order_by("-id").first()
    return OrderMapping.objects.get(allocation=alloc, child=child)


# --- Through the engine (Orchestrator.run_tick) -----------------------------------------------


def test_entry_is_not_sent_when_todays_pnl_cannot_be_read(desk, orch, faults):
    """Issue 11 defect 6: C2 (loss limit ₹50,000) holds today's 300; its LTP and positions cannot be
    read, so its loss is unknown: the next entry is SKIPPED with `loss_unmeasurable` and nothing
    reaches its broker, while C1 (no limit) still gets its entry."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    _limit(c2, "50000")
    faults.calculator_down.add("C2")
    faults.reads_down.add("C2")
    c2_before, c1_before = _orders("C2"), _orders("C1")

    desk.place("BUY", FUT, 150)
    orch.run_tick()

    assert _orders("C2") == c2_before
    skipped = _latest_entry_mapping(c2)
    assert skipped.status == MappingStatus.SKIPPED
    assert skipped.reason_code == LOSS_UNMEASURABLE
    assert "could not be measured" in skipped.reason
    assert _orders("C1") == c1_before + 1


def test_clients_own_losing_trade_does_not_stop_the_engines_entries(desk, orch):
    """Issue 11 defect 6: C4 (loss limit ₹20,000) lost ₹60,000 on 600 it bought itself; the
    engine's own 75 lost ₹7,500. The limit is the engine's: the next entry is sent."""
    replicate_entry(desk, orch)
    c4 = desk.children["C4"]
    close_by_hand("C4", 600, side="BUY")
    set_price(FUT, "19900")
    _limit(c4, "20000")
    before = _orders("C4")

    desk.place("BUY", FUT, 150)
    orch.run_tick()

    entry = _latest_entry_mapping(c4)
    assert entry.reason_code not in ("daily_loss_limit", LOSS_UNMEASURABLE)
    assert entry.status != MappingStatus.SKIPPED
    assert _orders("C4") == before + 1


def test_overnight_carry_does_not_count_as_todays_loss(desk, orch):
    """Issue 11 defect 6: C4's engine position was bought yesterday and is ₹15,000 down since; no
    engine trade today, so today's engine loss is 0 and the entry (limit ₹10,000) is sent."""
    replicate_entry(desk, orch)
    c4 = desk.children["C4"]
    yesterday = timezone.now() - timedelta(days=1)
    OrderMapping.objects.filter(child=c4).update(sent_at=yesterday, acked_at=yesterday, finished_at=yesterday)
    set_price(FUT, "19800")
    _limit(c4, "10000")
    before = _orders("C4")

    desk.place("BUY", FUT, 150)
    orch.run_tick()

    assert _latest_entry_mapping(c4).status != MappingStatus.SKIPPED
    assert _orders("C4") == before + 1


def test_engine_loss_today_past_the_limit_stops_entries(desk, orch):
    """Issue 11 defect 6: C4's engine 75 bought today is ₹7,500 down; limit ₹5,000: no entry,
    SKIPPED for the daily loss limit."""
    replicate_entry(desk, orch)
    c4 = desk.children["C4"]
    set_price(FUT, "19900")
    _limit(c4, "5000")
    before = _orders("C4")

    desk.place("BUY", FUT, 150)
    orch.run_tick()

    skipped = _latest_entry_mapping(c4)
    assert (skipped.status, skipped.reason_code) == (MappingStatus.SKIPPED, "daily_loss_limit")
    assert _orders("C4") == before


# --- replicated_day_pnl directly ---------------------------------------------------------------


def test_own_trades_are_not_counted(desk, orch):
    """Issue 11 defect 6: C2's engine 300 bought at ₹20,000 marked at ₹19,900 is −₹30,000; its own
    150 bought by hand (another −₹15,000 at the broker) is not counted."""
    replicate_entry(desk, orch)
    close_by_hand("C2", 150, side="BUY")
    set_price(FUT, "19900")

    assert _pnl(desk, "C2", "C1", "C3") == {"C2": Decimal("-30000"), "C1": Decimal("-7500"), "C3": 0}


def test_overnight_carry_is_not_counted(desk, orch):
    """Issue 11 defect 6: the next IST day, with no engine fill that day, the engine's P&L is 0
    however far the carried position moved."""
    replicate_entry(desk, orch)
    set_price(FUT, "19000")
    start, end = ist_day_bounds(timezone.now())

    assert _pnl(desk, "C2", now=end + timedelta(hours=5)) == {"C2": 0}
    assert _pnl(desk, "C2", now=start + timedelta(hours=5)) == {"C2": Decimal("-300000")}


def test_realised_part_and_open_remainder_marked_to_the_ltp(desk, orch):
    """Issue 11 defect 6: bought 300 at ₹20,000, sold 150 at ₹20,100 (master exit ratio 0.5),
    150 left marked at ₹19,800: +15,000 − 30,000 = −₹15,000."""
    replicate_entry(desk, orch)
    set_price(FUT, "20100")
    desk.place("SELL", FUT, 75)
    orch.run_tick()
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 150
    set_price(FUT, "19800")

    assert _pnl(desk, "C2") == {"C2": Decimal("-15000")}


def test_corrective_orders_are_not_counted(desk, orch):
    """Issue 11 defect 6: a staff corrective BUY 300 (after C2 sold by hand) is not the engine's
    replication: only the engine's entry 300 counts (−₹30,000 at ₹19,900)."""
    replicate_entry(desk, orch)
    close_by_hand("C2", 300)
    reconciliation_correct(
        child=desk.children["C2"], exchange="NFO", tradingsymbol=FUT, product="NRML", actor="a"
    )
    orch.run_tick()
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 300
    set_price(FUT, "19900")

    assert _pnl(desk, "C2") == {"C2": Decimal("-30000")}


def test_ltp_unavailable_falls_back_to_the_positions_last_price(desk, orch, faults):
    """Issue 11 defect 6: the LTP call fails; the positions' last price marks the open remainder."""
    replicate_entry(desk, orch)
    set_price(FUT, "19900")
    faults.calculator_down.add("C2")

    assert _pnl(desk, "C2") == {"C2": Decimal("-30000")}


def test_unreadable_prices_or_credentials_give_none_not_an_exception(desk, orch, faults):
    """Issue 11 defect 6: C2's LTP and positions fail, C4's credentials cannot be decrypted: both
    None; C1 is still measured; a child with no engine fill today needs no read (0)."""
    replicate_entry(desk, orch)
    faults.calculator_down.update({"C2", "C3"})
    faults.reads_down.update({"C2", "C3"})
    c4 = desk.children["C4"]

    class Sealed(ClientCache):
        def get(self, account):  # type: ignore[no-untyped-def]
            if account.pk == c4.pk:
                raise CredentialDecryptError("api_key cannot be decrypted with any configured key")
            return super().get(account)

    result = _pnl(desk, "C1", "C2", "C3", "C4", clients=Sealed())

    assert result == {"C1": 0, "C2": None, "C3": 0, "C4": None}


def test_fill_without_an_average_price_is_unmeasurable(desk, orch):
    """Issue 11 defect 6: an engine fill recorded without its average price cannot be valued: None."""
    replicate_entry(desk, orch)
    OrderMapping.objects.filter(child=desk.children["C2"], filled_quantity__gt=0).update(average_price=0)

    assert _pnl(desk, "C2") == {"C2": None}
