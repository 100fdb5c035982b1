"""Issue 13 item 2: `replication/services/` is the only writer of engine rows.

The source of `replication/` (services, migrations and the lease module excepted) is scanned for ORM
writes on engine models: `<Model>.objects....create/update/bulk_create/bulk_update/delete/...`,
the fast bulk writers `insert_rows`/`update_rows`, and `.save(` in the engine's own modules. A write
found fails the test, naming file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "replication"

ENGINE_MODELS = {
    "TickRun",
    "MarginSnapshot",
    "MasterOrder",
    "MasterPosition",
    "Allocation",
    "OrderMapping",
    "Entitlement",
    "ReplicationEvent",
}
WRITE_METHODS = {
    "create",
    "bulk_create",
    "bulk_update",
    "update",
    "delete",
    "get_or_create",
    "update_or_create",
}
BULK_WRITERS = {"insert_rows", "update_rows"}
# Not scanned: the write layer itself, migrations, the lease (its own service), the bulk writers'
# definitions, and the alerts app (its own rows, no engine rows).
EXCLUDED = ("services/", "migrations/", "alerts/", "lease.py", "bulk.py")
# `.save(` is looked for in the engine's modules (elsewhere it is a form's, a model's own `save`).
ENGINE_MODULES = (
    "engine/",
    "allocation/",
    "orchestrator.py",
    "replicator.py",
    "convergence.py",
    "pending.py",
    "order_updates.py",
    "entitlement.py",
    "daypnl.py",
    "events.py",
    "gate.py",
    "login_check.py",
    "wakeup.py",
    "fanout.py",
)


def _receiver_model(node: ast.expr) -> str | None:
    """`Model` when `node` is a chain that starts at `Model.objects`, else None."""
    while isinstance(node, ast.Call | ast.Attribute):
        if isinstance(node, ast.Call):
            node = node.func
            continue
        if node.attr == "objects" and isinstance(node.value, ast.Name):
            return node.value.id
        node = node.value
    return None


def engine_writes() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel.startswith(x) or f"/{x}" in f"/{rel}" for x in EXCLUDED):
            continue
        engine_module = rel.startswith(ENGINE_MODULES)
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in BULK_WRITERS:
                found.append((rel, node.lineno, func.id))
            elif isinstance(func, ast.Attribute):
                if func.attr in WRITE_METHODS and _receiver_model(func.value) in ENGINE_MODELS:
                    found.append((rel, node.lineno, f"{_receiver_model(func.value)}.{func.attr}"))
                elif func.attr == "save" and engine_module:
                    found.append((rel, node.lineno, "save"))
    return found


def test_engine_rows_are_written_only_by_services():
    """Issue 13 item 2: no engine module writes an engine row itself."""
    found = [f"{rel}:{line} {what}" for rel, line, what in engine_writes()]
    assert not found, "engine rows written outside replication/services:\n" + "\n".join(found)


def test_the_scan_sees_a_write():
    """Issue 13 item 2: the scan is not blind — the forms it looks for are found in a sample."""
    sample = (
        "OrderMapping.objects.filter(pk=1).update(status='x')\n"
        "Allocation.objects.create(master=m)\n"
        "insert_rows(OrderMapping, rows)\n"
        "ReplicationEvent.objects.bulk_create(rows)\n"
        "d.update({1: 2})\n"
    )
    calls = [n for n in ast.walk(ast.parse(sample)) if isinstance(n, ast.Call)]
    models = {_receiver_model(c.func.value) for c in calls if isinstance(c.func, ast.Attribute)}
    assert {"OrderMapping", "Allocation", "ReplicationEvent"} <= models
    assert None in models  # a dict's update is not a write
