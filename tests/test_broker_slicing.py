"""brokers.slicing.slice_quantity: orders above the freeze quantity, split into whole lots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.slicing import slice_quantity


def test_slice_quantity_full_slices_then_remainder():
    # NIFTY: lot 75, freeze 1800 (24 lots); 50 lots = 24 + 24 + 2
    assert slice_quantity(3750, 75, 1800) == [1800, 1800, 150]


def test_slice_quantity_freeze_not_a_lot_multiple_rounds_slices_down():
    assert slice_quantity(300, 75, 200) == [150, 150]


def test_slice_quantity_below_freeze_is_one_order():
    assert slice_quantity(150, 75, 1800) == [150]


def test_slice_quantity_freeze_is_inclusive():
    assert slice_quantity(1800, 75, 1800) == [1800]


def test_slice_quantity_without_freeze_is_one_order():
    assert slice_quantity(90000, 75, None) == [90000]


def test_slice_quantity_zero_is_no_order():
    assert slice_quantity(0, 75, 1800) == []


@pytest.mark.parametrize(
    ("quantity", "lot_size", "freeze"),
    [(-75, 75, 1800), (100, 75, 1800), (75, 0, 1800), (150, 75, 50)],
)
def test_slice_quantity_rejects_impossible_input(quantity, lot_size, freeze):
    with pytest.raises(ValueError):  # noqa: PT011  (each case has its own message)
        slice_quantity(quantity, lot_size, freeze)


@given(
    lots=st.integers(min_value=0, max_value=5000),
    lot_size=st.integers(min_value=1, max_value=2000),
    freeze_lots=st.integers(min_value=1, max_value=100),
    freeze_extra=st.integers(min_value=0, max_value=1999),
)
def test_slice_quantity_slices_are_whole_lots_within_freeze(lots, lot_size, freeze_lots, freeze_extra):
    freeze = freeze_lots * lot_size + min(freeze_extra, lot_size - 1)
    quantity = lots * lot_size

    slices = slice_quantity(quantity, lot_size, freeze)

    assert sum(slices) == quantity
    assert all(0 < s <= freeze and s % lot_size == 0 for s in slices)
    assert len(slices) == -(-lots // freeze_lots)  # as few orders as possible
