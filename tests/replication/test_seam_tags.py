"""The engine's tag fits every broker: at most 19 ASCII letters or digits (Angel's limit)."""

from __future__ import annotations

import pytest

from brokers.capabilities import ENGINE_TAG_MAX_LENGTH, KNOWN
from brokers.paper.models import PaperOrder
from replication.allocation import make_tag
from replication.events import ENGINE_TAG
from replication.models import OrderMapping
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db


def test_the_longest_tag_the_ids_allow_is_19_characters():
    tag = make_tag(36**9 - 1, 36**4 - 1, 36**3 - 1)  # 9 + 4 + 3 base-36 digits
    assert len(tag) == ENGINE_TAG_MAX_LENGTH
    assert all(caps.fits_tag(tag) for caps in KNOWN.values())
    with pytest.raises(ValueError, match="longer than 19"):
        make_tag(36**9, 36**4 - 1, 36**3 - 1)  # 20 characters: Kite took it, Angel would not


def test_tags_of_a_tick_fit_every_broker_and_are_the_engine_format(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    tags = list(OrderMapping.objects.exclude(quantity=0).values_list("tag", flat=True))
    assert tags
    for tag in tags:
        assert ENGINE_TAG.fullmatch(tag)  # the format engine_tagged() recognises, unchanged
        assert all(caps.fits_tag(tag) for caps in KNOWN.values()), tag
    at_broker = set(PaperOrder.objects.exclude(tag="").values_list("tag", flat=True))
    assert set(tags) <= at_broker
