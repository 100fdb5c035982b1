"""Steps of the SIGKILL crash tests (tests/test_crash_restart.py) that touch the shared database.

The orchestrator and the Kite simulator run as `manage.py` subprocesses on one SQLite file; this
module is the test's hand on that same file, run as a subprocess too:

    python -m tests.crash_harness setup SIM_CONFIG   migrate, the DESIGN §3.6 desk on the Kite path,
                                                     the simulator's sessions written to SIM_CONFIG
    python -m tests.crash_harness place SIDE SYMBOL QTY   once the orchestrator has finished a tick,
                                                     the master places a MARKET order
    python -m tests.crash_harness state              the state as JSON (see `state()`)
    python -m tests.crash_harness settle TIMEOUT     wait until no child order is in flight, then the
                                                     state; exit status 3 if it never settled

Settings come from the environment (DJANGO_SETTINGS_MODULE, DATABASE_URL, FIELD_ENCRYPTION_KEY...).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXPIRES = datetime(2099, 1, 1, tzinfo=UTC)  # sessions that outlive any test run
IN_FLIGHT = ("planned", "sending", "unknown", "open")


def credentials(user_id: str) -> dict[str, str]:
    """Fixed, valid-looking Kite credentials for a paper user id (test data, not secrets)."""
    name = user_id.lower()
    return {
        "api_key": f"crashkey{name}",
        "api_secret": f"crashsecret{name}000",
        "access_token": f"crashtoken{name}0000",
    }


def setup(sim_config: Path) -> None:
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import Account, Broker
    from accounts.services import account_set_credentials
    from lab.demo import build_desk

    call_command("migrate", verbosity=0, interactive=False)
    desk = build_desk()
    sessions = []
    for account in [desk.master, *desk.children.values()]:
        creds = credentials(account.broker_user_id)
        Account.objects.filter(pk=account.pk).update(broker=Broker.KITE)
        account.refresh_from_db()
        account_set_credentials(account=account, actor="crash-test", expires_at=EXPIRES, **creds)
        sessions.append(
            {
                "user_id": account.broker_user_id,
                "api_key": creds["api_key"],
                "access_token": creds["access_token"],
                "expires_at": EXPIRES.isoformat(),
            }
        )
    sim_config.write_text(json.dumps({"sessions": sessions}))
    with connection.cursor() as cursor:  # fold the WAL into the file: the test copies the file
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def place(side: str, symbol: str, quantity: int, *, timeout: float = 60.0) -> str:
    from brokers.paper.services import paper_order_place
    from replication.models import TickRun

    deadline = time.monotonic() + timeout
    while not TickRun.objects.filter(outcome=TickRun.Outcome.OK).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no orchestrator tick finished within {timeout} s")
        time.sleep(0.1)
    order = paper_order_place(
        user_id="MASTER",
        exchange="NFO",
        tradingsymbol=symbol,
        side=side,
        quantity=quantity,
        product="NRML",
        order_type="MARKET",
    )
    return order.order_id


def state() -> dict[str, Any]:
    """Mappings by status, the wanted intents, child orders per tag at the exchange, positions."""
    from django.db.models import Count

    from brokers.paper.models import PaperOrder, PaperPosition
    from lab.demo import CHILDREN, FUT
    from lab.soak import check_invariants
    from replication.models import MappingStatus, OrderMapping, ReplicationEvent

    mappings = OrderMapping.objects.all()
    child_orders = PaperOrder.objects.exclude(account__user_id="MASTER")
    per_tag = dict(child_orders.values("tag").annotate(n=Count("id")).values_list("tag", "n"))
    wanted = mappings.filter(quantity__gt=0).exclude(
        status__in=(MappingStatus.SKIPPED, MappingStatus.DRY_RUN)
    )
    positions = dict.fromkeys(CHILDREN, 0)
    for user_id, quantity in PaperPosition.objects.filter(
        account__user_id__in=list(CHILDREN), tradingsymbol=FUT
    ).values_list("account__user_id", "quantity"):
        positions[user_id] += quantity
    findings = check_invariants()
    return {
        "statuses": dict(mappings.values("status").annotate(n=Count("id")).values_list("status", "n")),
        "wanted": {
            m.tag: {"status": m.status, "quantity": m.quantity, "filled": m.filled_quantity} for m in wanted
        },
        "orders_per_tag": per_tag,
        "filled_at_exchange": dict(child_orders.values_list("tag", "filled_quantity")),
        "positions": positions,
        "findings": {
            name: getattr(findings, name) for name in ("duplicates", "orphans", "lost", "unsettled", "drift")
        },
        "events": sorted(set(ReplicationEvent.objects.values_list("kind", flat=True))),
    }


def settle(timeout: float) -> tuple[bool, dict[str, Any]]:
    from lab.soak.run import UNSIZED_LIVE
    from replication.models import Allocation, OrderMapping

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mappings = OrderMapping.objects.all()
        # An unsized allocation still has intents to make (a group whose first wave was made
        # before the rest): nothing in flight is not settled then.
        if (
            mappings.exists()
            and not mappings.filter(status__in=IN_FLIGHT).exists()
            and not Allocation.objects.filter(sized=False, status__in=UNSIZED_LIVE).exists()
        ):
            return True, state()
        time.sleep(0.2)
    return False, state()


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pms.settings")
    import django

    django.setup()
    step, args = argv[0], argv[1:]
    if step == "setup":
        setup(Path(args[0]))
    elif step == "place":
        sys.stdout.write(place(args[0], args[1], int(args[2])) + "\n")
    elif step == "state":
        sys.stdout.write(json.dumps(state()) + "\n")
    elif step == "settle":
        settled, snapshot = settle(float(args[0]))
        sys.stdout.write(json.dumps(snapshot) + "\n")
        return 0 if settled else 3
    else:
        raise SystemExit(f"unknown step {step!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
