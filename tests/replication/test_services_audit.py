"""Issue 13 item 2: the audit log has one vocabulary (`EventKind`) and one writer.

Every row the engine, staff and accounts write carries a kind that is an `EventKind` member; the
writer refuses anything else (old spellings included) and writes nothing; its rows commit or roll
back with the change they record.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts.models import AccountStatus
from replication.models import LEGACY_EVENT_KINDS, EventKind, ReplicationEvent
from replication.services import UnknownEventKind, audit, audit_row, audit_rows
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db


def test_audit_refuses_kind_outside_the_enum_and_writes_nothing():
    """Issue 13 item 2: a kind outside EventKind (or its old spelling) is refused, no row is written."""
    for kind in ("account_needs_login", "no_such_kind", ""):
        with pytest.raises(UnknownEventKind):
            audit(kind=kind, message="x")
        with pytest.raises(UnknownEventKind):
            audit_rows([audit_row(kind=EventKind.SENT), ReplicationEvent(kind=kind)])
    assert not ReplicationEvent.objects.exists()


def test_audit_old_spelling_points_at_the_new_name():
    """Issue 13 item 2: `account_needs_login` and `account.login_needed` named one fact; the one kept is
    the enum member, and the refusal of the old one says which name to write."""
    assert LEGACY_EVENT_KINDS == {"account_needs_login": EventKind.ACCOUNT_LOGIN_NEEDED}
    assert "account_needs_login" not in EventKind.values
    with pytest.raises(UnknownEventKind, match=r"account\.login_needed"):
        audit(kind="account_needs_login")


def test_audit_rows_roll_back_with_the_change_they_record():
    """Issue 13 item 2: audit rows are written in the caller's transaction (rolled back with it)."""

    def change_then_fail() -> None:
        with transaction.atomic():
            audit(kind=EventKind.ENGINE_CONTROL_CHANGED, message="one")
            assert audit_rows([audit_row(kind=EventKind.SENT), audit_row(kind="send_failed")]) == 2
            assert ReplicationEvent.objects.count() == 3
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert not ReplicationEvent.objects.exists()
    audit(kind="sent")
    assert list(ReplicationEvent.objects.values_list("kind", flat=True)) == [EventKind.SENT]


def _kinds_written() -> set[str]:
    return set(ReplicationEvent.objects.values_list("kind", flat=True))


def test_every_kind_written_during_an_engine_run_is_in_the_enum(desk, orch, faults):
    """Issue 13 item 2: run the paper desk through entries, an exit, a rejected master order and
    faults (expired session, rate limit, unknown outcome, rejected after accept); every
    ReplicationEvent kind written is an EventKind member, and needs-login is written under the one
    name `account.login_needed`."""
    orch.run_tick()
    faults.token_expired.add("C1")
    faults.rate_limited_once.add("C2")
    faults.place_then_unknown.add("C4")
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    faults.token_expired.clear()
    faults.reject_after_accept.add("C5")
    desk.place("BUY", FUT, 75)
    orch.run_tick()
    orch.run_tick()
    desk.place("SELL", FUT, 150)
    orch.run_tick()
    desk.place("BUY", FUT, 1800)  # beyond the master's margin: rejected, recorded
    orch.run_tick()
    orch.run_tick()

    kinds = _kinds_written()
    assert kinds - set(EventKind.values) == set()
    # the run did go through the paths it means to cover
    assert {EventKind.SENT, EventKind.ACCOUNT_LOGIN_NEEDED, EventKind.MASTER_ORDER_REJECTED} <= kinds
    desk.children["C1"].refresh_from_db()
    assert desk.children["C1"].status == AccountStatus.NEEDS_LOGIN


def _kinds_in_source() -> dict[str, list[str]]:
    """Every literal kind the product code hands to an audit write (or an order outcome's event)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    writers = {"audit", "audit_row", "ReplicationEvent", "Outcome"}
    found: dict[str, list[str]] = {}
    for app in ("replication", "accounts"):
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = (
                    func.id
                    if isinstance(func, ast.Name)
                    else func.attr
                    if isinstance(func, ast.Attribute)
                    else ""
                )
                is_create = name == "create" and "ReplicationEvent" in ast.unparse(func)
                if name not in writers and not is_create:
                    continue
                for kw in node.keywords:
                    if kw.arg not in ("kind", "event"):
                        continue
                    values = (
                        [kw.value]
                        if not isinstance(kw.value, ast.IfExp)
                        else [kw.value.body, kw.value.orelse]
                    )
                    for value in values:
                        if isinstance(value, ast.Constant) and isinstance(value.value, str):
                            where = f"{path.relative_to(root)}:{node.lineno}"
                            found.setdefault(value.value, []).append(where)
    return found


def test_every_kind_written_in_the_source_is_in_the_enum():
    """Issue 13 item 2: every literal kind passed to an audit write (or an order outcome's event, which
    becomes the row's kind) in replication/ and accounts/ is an EventKind member."""
    from replication.replicator import SEND_ERRORS

    found = _kinds_in_source()
    for _error, _status, event in SEND_ERRORS:
        found.setdefault(event, []).append("replication.replicator.SEND_ERRORS")
    assert "sent" in found  # the scan does see the engine's outcomes
    unknown = {kind: where for kind, where in found.items() if kind not in EventKind.values}
    assert unknown == {}
