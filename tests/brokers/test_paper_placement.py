"""Batched placement on the paper exchange: a batch places each order exactly as one at a time
would, in a constant number of statements; the sequencer groups orders sent at the same moment."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from brokers.errors import InputRejected, OutcomeUnknown
from brokers.paper import placement, rows
from brokers.paper.client import PaperBroker
from brokers.paper.models import PaperAccount, PaperInstrument, PaperOrder, PaperPosition, PaperTrade
from brokers.paper.placement import NewOrder, paper_orders_place
from brokers.paper.sequencer import OrderSequencer
from brokers.paper.services import paper_account_open, paper_order_place
from brokers.types import OrderRequest, OrderType, Product, Side
from tests.paper_factories import NiftyIndexFactory, NiftyOptionFactory, PaperInstrumentFactory

D = Decimal
FUT = "NIFTY25DECFUT"
CALL = "NIFTY25DEC20000CE"


@pytest.fixture
def market(db):
    NiftyIndexFactory()
    PaperInstrumentFactory()
    NiftyOptionFactory()


def order(user_id: str, **kw) -> NewOrder:
    values = {
        "exchange": "NFO",
        "tradingsymbol": FUT,
        "side": "BUY",
        "quantity": 75,
        "product": "NRML",
        "order_type": "MARKET",
    } | kw
    return NewOrder(user_id=user_id, **values)


def session(user_id: str) -> list[NewOrder]:
    """One account's orders, covering every outcome a placement can have."""
    return [
        order(user_id, quantity=150),  # fills at 20,000
        order(user_id, order_type="LIMIT", price=D("19900")),  # rests OPEN, blocks margin
        order(user_id, side="SELL"),  # reduces the long position: realised P&L 0
        order(user_id, quantity=1800),  # more than the rest of the cash: REJECTED
        order(user_id, tradingsymbol="NOPE"),  # unknown instrument: InputRejected
        order(user_id, quantity=70),  # not a lot multiple: InputRejected
        order(user_id, order_type="LIMIT", price=D("19000"), validity="IOC"),  # CANCELLED
        order(user_id, order_type="SL", price=D("20100"), trigger_price=D("20050")),  # TRIGGER PENDING
        order(user_id, tradingsymbol=CALL, side="SELL"),  # short call: margin on the index's spot
        order(user_id, tradingsymbol=CALL, quantity=150),  # long call: covers the short one
        order(user_id, side="SELL"),  # flat again in the future
    ]


def outcome(result: PaperOrder | InputRejected) -> tuple[object, ...]:
    if isinstance(result, InputRejected):
        return ("input", str(result))
    return (
        result.tradingsymbol,
        result.side,
        result.quantity,
        result.status,
        result.status_message,
        result.filled_quantity,
        result.average_price,
        result.order_id[-7:],  # the account's sequence number
    )


def account_state(user_id: str) -> tuple[object, ...]:
    positions = sorted(
        (p.tradingsymbol, p.quantity, p.average_price, p.realised_pnl, p.buy_value, p.sell_value)
        for p in PaperPosition.objects.filter(account__user_id=user_id)
    )
    stored = sorted(
        (o.order_id[-7:], o.status, o.filled_quantity)
        for o in PaperOrder.objects.filter(account__user_id=user_id)
    )
    trades = PaperTrade.objects.filter(account__user_id=user_id).count()
    seq = PaperAccount.objects.get(user_id=user_id).order_seq
    return positions, stored, trades, seq


def one_by_one(orders: list[NewOrder]) -> list[PaperOrder | InputRejected]:
    results: list[PaperOrder | InputRejected] = []
    for o in orders:
        try:
            results.append(paper_order_place(**{f: getattr(o, f) for f in NewOrder.__dataclass_fields__}))
        except InputRejected as exc:
            results.append(exc)
    return results


def test_batch_places_each_order_as_one_at_a_time_would(market):
    for user_id in ("SOLO1", "SOLO2", "BATCH1", "BATCH2"):
        paper_account_open(user_id=user_id, cash=D("1000000"))
    alone = one_by_one(session("SOLO1")) + one_by_one(session("SOLO2"))
    # The batch interleaves the two accounts, as concurrent senders would.
    mixed = [o for pair in zip(session("BATCH1"), session("BATCH2"), strict=True) for o in pair]
    batched = paper_orders_place(mixed)

    assert [outcome(r) for r in batched[0::2]] == [outcome(r) for r in alone[:11]]
    assert [outcome(r) for r in batched[1::2]] == [outcome(r) for r in alone[11:]]
    assert account_state("BATCH1") == account_state("SOLO1")
    assert account_state("BATCH2") == account_state("SOLO2")
    statuses = [r.status if isinstance(r, PaperOrder) else "input" for r in batched[0::2]]
    assert statuses == [
        "COMPLETE",
        "OPEN",
        "COMPLETE",
        "REJECTED",
        "input",
        "input",
        "CANCELLED",
        "TRIGGER PENDING",
        "COMPLETE",
        "COMPLETE",
        "COMPLETE",
    ]
    assert account_state("BATCH1")[0][1][1] == 0  # flat in the future again


def test_batch_input_errors_take_no_order_number_and_leave_the_rest_placed(market):
    paper_account_open(user_id="PX0001", cash=D("1000000"))
    results = paper_orders_place(
        [order("PX0001"), order("PX0001", side="HOLD"), order("NOBODY"), order("PX0001")]
    )
    assert isinstance(results[1], InputRejected) and "transaction type" in str(results[1])
    assert isinstance(results[2], InputRejected) and "unknown paper account" in str(results[2])
    assert [r.order_id[-7:] for r in (results[0], results[3])] == ["0000001", "0000002"]
    assert PaperAccount.objects.get(user_id="PX0001").order_seq == 2
    assert PaperPosition.objects.get(account__user_id="PX0001").quantity == 150


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        (range(2), range(10, 18)),  # small batches
        (range(20, 45), range(50, 100)),  # both above it
    ],
)
def test_batch_statements_do_not_grow_with_the_batch(market, smaller, larger):
    for n in range(100):
        paper_account_open(user_id=f"PQ{n:04d}", cash=D("1000000"))

    def statements(users: range) -> int:
        with CaptureQueriesContext(connection) as ctx:
            results = paper_orders_place([order(f"PQ{n:04d}") for n in users])
        assert all(r.status == "COMPLETE" for r in results)  # type: ignore[union-attr]
        return len(ctx.captured_queries)

    # First orders (no books to read), then second orders (books read) of fewer and more accounts.
    assert statements(smaller) == statements(larger)
    assert statements(smaller) == statements(larger)


def test_batch_rows_are_numbered_in_arrival_order_and_read_back_as_written(market):
    users = [f"PN{n:04d}" for n in range(30)]
    for user in users:
        paper_account_open(user_id=user, cash=D("1000000"))
    # Accounts in reverse order of creation, each with two orders: a fill and a resting order.
    sent = [
        o
        for user in reversed(users)
        for o in (order(user), order(user, order_type="LIMIT", price=D("19000")))
    ]
    placed = paper_orders_place(sent)
    ids = [o.pk for o in placed]  # type: ignore[union-attr]
    assert ids == sorted(ids) and len(set(ids)) == len(sent)
    stored = {o.pk: o for o in PaperOrder.objects.filter(pk__in=ids)}
    assert [(stored[o.pk].order_id, stored[o.pk].tag, stored[o.pk].status) for o in placed] == [  # type: ignore[union-attr]
        (o.order_id, o.tag, o.status)
        for o in placed  # type: ignore[union-attr]
    ]
    assert [o.order_id[-7:] for o in placed[:2]] == ["0000001", "0000002"]  # type: ignore[union-attr]
    trades = PaperTrade.objects.filter(account__user_id__in=users)
    assert {(t.order_id, t.quantity) for t in trades} == {(o.pk, 75) for o in placed[::2]}  # type: ignore[union-attr]
    assert all(a.order_seq == 2 for a in PaperAccount.objects.filter(user_id__in=users))
    # Second orders: the positions are updated in place, the accounts' numbers go on.
    again = paper_orders_place([order(user, side="SELL") for user in users])
    assert all(o.status == "COMPLETE" for o in again)  # type: ignore[union-attr]
    assert all(o.order_id.endswith("0000003") for o in again)  # type: ignore[union-attr]
    assert set(
        PaperPosition.objects.filter(account__user_id__in=users).values_list("quantity", flat=True)
    ) == {0}


def test_batch_database_error_rolls_back_every_order(market, monkeypatch):
    paper_account_open(user_id="PX0002", cash=D("1000000"))
    real = rows.insert_many

    def failing(instances, **kw):
        if instances and isinstance(instances[0], PaperTrade):
            raise DatabaseError("disk I/O error")
        return real(instances, **kw)

    monkeypatch.setattr(rows, "insert_many", failing)
    with pytest.raises(DatabaseError):
        paper_orders_place([order("PX0002"), order("PX0002")])
    assert not PaperOrder.objects.exists()
    assert not PaperPosition.objects.exists()
    assert PaperAccount.objects.get(user_id="PX0002").order_seq == 0


def test_build_gives_what_the_model_constructor_gives(market):
    account = paper_account_open(user_id="PX0003", cash=D("1000000"))
    built = rows.build(
        PaperPosition, {"account": account}, instrument_id=1, exchange="NFO", tradingsymbol=FUT
    )
    made = PaperPosition(account=account, instrument_id=1, exchange="NFO", tradingsymbol=FUT)
    fields = [f.attname for f in PaperPosition._meta.concrete_fields if f.attname != "updated_at"]
    assert [getattr(built, f) for f in fields] == [getattr(made, f) for f in fields]
    assert built.account is account and built._state.adding and built.updated_at is not None


def test_the_paper_models_load_without_model_init(market):
    """The placement reads accounts, books and instruments for every batch (pms.fastload)."""
    from pms.fastload import FastLoadMixin

    assert all(
        issubclass(m, FastLoadMixin)
        for m in (PaperAccount, PaperInstrument, PaperOrder, PaperPosition, PaperTrade)
    )
    paper_account_open(user_id="PF0001", cash=D("1000000"))
    (placed,) = paper_orders_place([order("PF0001")])
    loaded = PaperOrder.objects.only("status").get(pk=placed.pk)  # type: ignore[union-attr]
    assert loaded.get_deferred_fields() >= {"order_id", "quantity"}
    assert (loaded.status, loaded.quantity, loaded.account.user_id) == ("COMPLETE", 75, "PF0001")
    loaded.status_message = "checked"
    loaded.save(update_fields=["status_message"])  # an UPDATE of the loaded row, not an INSERT
    assert PaperOrder.objects.get(pk=placed.pk).status_message == "checked"  # type: ignore[union-attr]
    assert PaperOrder.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY rows are PostgreSQL's")
def test_copy_rows_hold_the_values_django_would_send(market):
    paper_account_open(user_id="PC0001", cash=D("1000000"))
    (placed,) = paper_orders_place([order("PC0001", tag="copy")])
    trade = PaperTrade.objects.get(order=placed)
    position = PaperPosition.objects.get(account__user_id="PC0001")
    for instance in (placed, trade, position):
        fields = tuple(type(instance)._meta.concrete_fields)
        django = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
        copied = rows._copy_reader(fields, connection)(instance)
        # The same values, as plain ints and strs (psycopg's int wrappers, enums' text).
        assert copied == django
        plain = [int if isinstance(v, int) else str if isinstance(v, str) else type(v) for v in django]
        assert [type(v) for v in copied] == plain


# --- The sequencer --------------------------------------------------------------------------------


def fake_batch(calls: list[list[str]], gate: threading.Event | None = None):
    def place(orders):
        if gate is not None and not calls:
            gate.wait(5)  # the first batch holds the turn until everyone else has queued
        calls.append([o.tag for o in orders])
        return [
            InputRejected(f"bad {o.tag}") if o.tag.startswith("bad") else PaperOrder(order_id=f"id-{o.tag}")
            for o in orders
        ]

    return place


def test_sequencer_places_orders_sent_together_as_one_batch():
    calls: list[list[str]] = []
    gate = threading.Event()
    sequencer = OrderSequencer(threading.Lock(), place_batch=fake_batch(calls, gate))
    tags = [f"t{n}" for n in range(20)]

    def send(tag: str) -> str:
        return sequencer.place(order("X", tag=tag)).order_id

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(send, tag) for tag in tags]
        while len(sequencer._queue) < 19:  # the first caller is inside the batch, the rest wait
            threading.Event().wait(0.001)
        gate.set()
        ids = [f.result(timeout=5) for f in futures]
    assert ids == [f"id-{tag}" for tag in tags]  # each caller gets its own order
    assert sorted(tag for batch in calls for tag in batch) == sorted(tags)
    assert len(calls) == 2 and len(calls[1]) == 19  # one, then everything that queued meanwhile
    assert sequencer.batches == 2


def test_sequencer_leader_returns_once_its_own_order_is_placed_and_hands_the_lead_on():
    """The caller that placed the first batch does not stay to place everyone else's."""
    calls: list[list[str]] = []
    first_gate, second_gate = threading.Event(), threading.Event()

    def place(orders):
        (first_gate if not calls else second_gate).wait(5)
        calls.append([o.tag for o in orders])
        return [PaperOrder(order_id=f"id-{o.tag}") for o in orders]

    sequencer = OrderSequencer(threading.Lock(), place_batch=place)
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(sequencer.place, order("X", tag="lead"))
        while not sequencer._leading:
            threading.Event().wait(0.001)
        rest = [pool.submit(sequencer.place, order("X", tag=f"t{n}")) for n in range(5)]
        while len(sequencer._queue) < 5:
            threading.Event().wait(0.001)
        first_gate.set()
        assert first.result(timeout=5).order_id == "id-lead"  # while the second batch is held
        assert not any(f.done() for f in rest)
        second_gate.set()
        assert [f.result(timeout=5).order_id for f in rest] == [f"id-t{n}" for n in range(5)]
    assert calls == [["lead"], [f"t{n}" for n in range(5)]]
    assert not sequencer._leading and not sequencer._queue  # the last leader gave the lead up


def test_sequencer_hands_the_lead_to_a_caller_that_has_led_before():
    """Its thread already has a database connection; the order of the oldest caller still goes
    in that same next batch."""
    placed: list[tuple[str, list[str]]] = []  # (thread that placed the batch, its orders)
    hold, again = threading.Event(), threading.Event()

    def place(orders):
        if orders[0].tag == "b":
            hold.wait(5)
        placed.append((threading.current_thread().name, [o.tag for o in orders]))
        return [PaperOrder(order_id=f"id-{o.tag}") for o in orders]

    sequencer = OrderSequencer(threading.Lock(), place_batch=place)
    results: dict[str, str] = {}

    def send(tag: str) -> None:
        results[tag] = sequencer.place(order("X", tag=tag)).order_id

    def twice() -> None:
        send("a1")
        again.wait(5)
        send("a2")

    def until(condition) -> None:
        for _ in range(5000):
            if condition():
                return
            threading.Event().wait(0.001)
        raise AssertionError("timed out")

    threads = [
        threading.Thread(target=twice, name="A"),
        threading.Thread(target=send, args=("b",), name="B"),
        threading.Thread(target=send, args=("c",), name="C"),
    ]
    threads[0].start()
    until(lambda: placed)  # A has led once
    threads[1].start()
    until(lambda: sequencer.batches == 2)  # B leads, its batch held
    threads[2].start()
    until(lambda: len(sequencer._queue) == 1)  # C queued first ...
    again.set()
    until(lambda: len(sequencer._queue) == 2)  # ... then A
    hold.set()
    for thread in threads:
        thread.join(5)
    assert placed == [("A", ["a1"]), ("B", ["b"]), ("A", ["c", "a2"])]
    assert results == {tag: f"id-{tag}" for tag in ("a1", "b", "c", "a2")}


def test_sequencer_interrupted_batch_releases_its_callers_and_the_lead():
    def interrupted(orders):
        raise KeyboardInterrupt

    sequencer = OrderSequencer(threading.Lock(), place_batch=interrupted)
    with pytest.raises(KeyboardInterrupt):
        sequencer.place(order("X", tag="a"))
    assert not sequencer._leading
    sequencer.place_batch = fake_batch([])
    assert sequencer.place(order("X", tag="b")).order_id == "id-b"  # the next caller can lead


def test_sequencer_gives_an_input_error_to_its_own_caller_only():
    calls: list[list[str]] = []
    sequencer = OrderSequencer(threading.Lock(), place_batch=fake_batch(calls))
    with pytest.raises(InputRejected, match="bad1"):
        sequencer.place(order("X", tag="bad1"))
    assert sequencer.place(order("X", tag="ok")).order_id == "id-ok"


def test_sequencer_reports_a_failed_batch_to_every_caller_as_unknown():
    def broken(orders):
        raise DatabaseError("database is locked")

    sequencer = OrderSequencer(threading.Lock(), place_batch=broken)
    errors = []
    for tag in ("a", "b"):
        with pytest.raises(OutcomeUnknown, match="database is locked") as info:
            sequencer.place(order("X", tag=tag))
        errors.append(info.value)
    assert errors[0] is not errors[1]  # one exception per caller, never one shared across threads
    assert isinstance(errors[0].__cause__, DatabaseError)


def test_sequencer_respects_the_batch_limit():
    calls: list[list[str]] = []
    gate = threading.Event()
    sequencer = OrderSequencer(threading.Lock(), place_batch=fake_batch(calls, gate), max_batch=4)
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(sequencer.place, order("X", tag=f"t{n}")) for n in range(10)]
        while len(sequencer._queue) < 9:
            threading.Event().wait(0.001)
        gate.set()
        assert len({f.result(timeout=5).order_id for f in futures}) == 10
    assert max(len(batch) for batch in calls) <= 4


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        threading.Event().wait(0.001)


def test_sequencer_gathers_orders_due_within_its_window_into_one_batch():
    """Orders sent together arrive a little apart (each caller's simulated round trip ends on its
    own): a leader waits up to the window for those due within it, rather than placing its own
    order alone and the rest, queued meanwhile, in a second batch (issue 17, paper on PostgreSQL)."""
    calls: list[list[str]] = []
    # Wide margins for a busy machine: the window returns as soon as "b" arrives.
    sequencer = OrderSequencer(threading.Lock(), place_batch=fake_batch(calls), gather=10.0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        second = pool.submit(sequencer.place, order("Y", tag="b"), delay=1.0)
        _until(lambda: sequencer._due)  # its round trip has begun
        assert sequencer.place(order("X", tag="a")).order_id == "id-a"
        assert second.result(timeout=5).order_id == "id-b"
    assert calls == [["a", "b"]]


def test_sequencer_does_not_wait_for_orders_due_after_its_window():
    calls: list[list[str]] = []
    sequencer = OrderSequencer(threading.Lock(), place_batch=fake_batch(calls), gather=0.01)
    with ThreadPoolExecutor(max_workers=1) as pool:
        late = pool.submit(sequencer.place, order("Y", tag="b"), delay=1.0)
        _until(lambda: sequencer._due)
        assert sequencer.place(order("X", tag="a")).order_id == "id-a"
        assert calls == [["a"]]  # placed at once: the other order is not due within the window
        assert late.result(timeout=5).order_id == "id-b"
    assert calls == [["a"], ["b"]]
    assert not sequencer._due  # nothing left announced


def _send_from_thread(user_id: str) -> str:
    try:
        broker = PaperBroker(user_id, latency_ms=5)
        return broker.place_order(
            OrderRequest("NFO", FUT, Side.BUY, 75, Product.NRML, OrderType.MARKET, tag=user_id)
        )
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_paper_broker_threads_share_batches_and_lose_nothing(market):
    from brokers.paper.client import SEQUENCER

    users = [f"PS{n:04d}" for n in range(40)]
    for user_id in users:
        paper_account_open(user_id=user_id, cash=D("1000000"))
    before = SEQUENCER.batches
    with ThreadPoolExecutor(max_workers=40) as pool:
        ids = list(pool.map(_send_from_thread, users))
    assert len(set(ids)) == 40
    by_tag = dict(PaperOrder.objects.values_list("tag", "order_id"))
    assert by_tag == dict(zip(users, ids, strict=True))  # each caller got the id of its own order
    assert PaperTrade.objects.count() == 40
    assert SEQUENCER.batches > before


def test_order_id_for_uses_the_exchange_date_account_and_sequence():
    account = PaperAccount(id=12, user_id="X", order_seq=345)
    from datetime import UTC, datetime

    assert placement.order_id_for(account, datetime(2026, 1, 1, 20, 0, tzinfo=UTC)) == "2601020000120000345"
