"""The paper margin model (pure: no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.margin import Leg, MarginRates, net_legs, portfolio_margin
from brokers.paper.pricing import option_delta, option_premium, round_to_tick

D = Decimal


def fut(quantity: int, price: str = "20000", key: str = "NFO:NIFTY25DECFUT") -> Leg:
    return Leg(key=key, kind="FUT", underlying="NIFTY", quantity=quantity, price=D(price))


def opt(
    quantity: int, price: str = "200", *, kind: str = "CE", spot: str = "20000", strike: str = "20000"
) -> Leg:
    return Leg(
        key=f"NFO:NIFTY25DEC{strike}{kind}",
        kind=kind,
        underlying="NIFTY",
        quantity=quantity,
        price=D(price),
        underlying_price=D(spot),
        strike=D(strike),
    )


@pytest.mark.parametrize("quantity", [75, -75])
def test_margin_futures_ten_percent_of_notional_both_sides(quantity):
    assert portfolio_margin([fut(quantity)]).total == D("150000.00")


def test_margin_long_option_is_its_premium():
    breakdown = portfolio_margin([opt(75, "200")])
    assert breakdown.total == D("15000.00")
    assert breakdown.option_premium == D("15000.00")


def test_margin_short_option_on_underlying_notional():
    assert portfolio_margin([opt(-75, "200", spot="21000")]).total == D("157500.00")


def test_margin_short_option_falls_back_to_strike_without_underlying_price():
    assert portfolio_margin([opt(-75, "200", spot="0", strike="19000")]).total == D("142500.00")


@pytest.mark.parametrize(("product", "expected"), [("CNC", "150000.00"), ("MIS", "30000.00")])
def test_margin_cash_equity_by_product(product, expected):
    leg = Leg(key="NSE:INFY", kind="EQ", underlying="INFY", quantity=100, price=D("1500"), product=product)
    assert portfolio_margin([leg]).total == D(expected)


def test_margin_hedge_offset_matches_worked_example():
    """DESIGN §3.6 step 4: 2 lots call bought, 2 lots future sold -> 1,20,000 after the hedge benefit."""
    breakdown = portfolio_margin([fut(-150), opt(150, "200")])
    assert breakdown.futures == D("300000.00")
    assert breakdown.option_premium == D("30000.00")
    assert breakdown.hedge_benefit == D("210000.00")
    assert breakdown.total == D("120000.00")


def test_margin_hedge_offset_only_for_covered_quantity():
    # 150 short, 75 long call: half the short margin is covered -> 0.7 x 150,000.
    breakdown = portfolio_margin([fut(-150), opt(75, "200")])
    assert breakdown.hedge_benefit == D("105000.00")
    assert breakdown.total == D("300000.00") + D("15000.00") - D("105000.00")


def test_margin_hedge_offset_needs_same_underlying():
    other = Leg(
        key="NFO:BANKNIFTY25DECFUT", kind="FUT", underlying="BANKNIFTY", quantity=-35, price=D("52000")
    )
    breakdown = portfolio_margin([other, opt(150, "200")])
    assert breakdown.hedge_benefit == D("0.00")


def test_margin_long_future_gets_no_hedge_offset():
    assert portfolio_margin([fut(150), opt(150, "200")]).hedge_benefit == D("0.00")


def test_margin_rates_are_overridable():
    rates = MarginRates(futures=D("0.12"), hedge_offset=D("0.5"))
    assert portfolio_margin([fut(75)], rates).total == D("180000.00")
    assert portfolio_margin([fut(-75), opt(75, "200")], rates).hedge_benefit == D("90000.00")


def test_net_legs_open_exit_order_nets_with_position():
    assert net_legs([fut(75), fut(-75, "20100")]) == []
    assert portfolio_margin([fut(75), fut(-75, "20100")]).total == D("0.00")


def test_net_legs_prices_remaining_side_by_weighted_average():
    (leg,) = net_legs([fut(75, "20000"), fut(75, "19900"), fut(-75, "21000")])
    assert leg.quantity == 75
    assert leg.price == D("19950")


def test_pricing_premiums_plausible_and_on_tick():
    atm_call = option_premium(spot=D("24000"), strike=D("24000"), kind="CE", days=7, volatility=D("0.13"))
    otm_call = option_premium(spot=D("24000"), strike=D("24500"), kind="CE", days=7, volatility=D("0.13"))
    itm_put = option_premium(spot=D("24000"), strike=D("24500"), kind="PE", days=7, volatility=D("0.13"))
    assert D("100") < atm_call < D("250")
    assert D("0.05") <= otm_call < atm_call
    assert itm_put > D("500")
    for premium in (atm_call, otm_call, itm_put):
        assert premium % D("0.05") == 0


def test_pricing_delta_signs_and_round_to_tick():
    call = option_delta(spot=D("24000"), strike=D("24000"), kind="CE", days=7, volatility=D("0.13"))
    put = option_delta(spot=D("24000"), strike=D("24000"), kind="PE", days=7, volatility=D("0.13"))
    assert abs(call - D("0.5")) < D("0.01")
    assert abs(put + D("0.5")) < D("0.01")
    assert round_to_tick(D("100.03"), D("0.05")) == D("100.05")


def test_net_legs_of_one_leg_is_that_leg_as_netting_gives_it():
    for leg in (fut(75, "20000.05"), fut(-150, "19999.95")):
        assert net_legs([leg]) == net_legs(iter([leg])) == [leg]  # an iterator takes the netting path
    assert net_legs([fut(0)]) == net_legs(iter([fut(0)])) == []
