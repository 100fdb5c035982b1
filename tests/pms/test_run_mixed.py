"""Issues 15 and 16: `make run BROKERS=mixed`, the demo on a desk mixing all four brokers.

`MASTER1` on the Kite simulator, `CHILD1` and `CHILD2` on the Angel simulator (the real
smartapi-python SDK over HTTP), `CHILD5` (C5 of the worked example) on
the Dhan simulator (dhanhq), `CHILD4` on the Alice Blue simulator (Ant-A3), `CHILD3` on the paper
exchange. The master's order is placed as the README says (`manage.py paper order MASTER1 buy
NFO:<future> 2 --lots`); the engine sees it through Kite's order book and every child gets the
worked example's quantity (DESIGN §3.6), whatever its broker, through its own simulator. Ctrl-C then
stops all seven processes with exit 0. Plain `make run` and `make run KITE=sim` put the seeded demo
accounts back where they were.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from django.core.management import call_command

from accounts.models import Account, Broker
from tests.pms.test_run_stop import BASE_DIR, Terminal, _assert_clean, _env, _free_port, _ready

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and ptys of Linux")

PYTHON = str(BASE_DIR / ".venv/bin/python")
# The accounts seed_demo makes (the master and C1-C5 of the worked example).
DEMO = ("MASTER1", "CHILD1", "CHILD2", "CHILD3", "CHILD4", "CHILD5")
MIXED_DEMO = DEMO
MIXED_BROKERS = {
    "MASTER1": Broker.KITE,
    "CHILD1": Broker.ANGEL,
    "CHILD2": Broker.ANGEL,
    "CHILD3": Broker.PAPER,
    "CHILD4": Broker.ALICE,
    "CHILD5": Broker.DHAN,
}
# DESIGN §3.6 step 1, the master buying 2 lots: C1 1 lot, C2 4, C3 none (below one lot), C4 1, C5 1.
WORKED_EXAMPLE_LOTS = {"MASTER1": 2, "CHILD1": 1, "CHILD2": 4, "CHILD3": 0, "CHILD4": 1, "CHILD5": 1}

# What the desk holds, read from the database the processes share (one JSON line).
STATE = """
import json
from accounts.models import Account
from brokers.paper.models import PaperInstrument, PaperOrder, PaperPosition
from replication.models import OrderMapping
symbol = {symbol!r}
lot = PaperInstrument.objects.get(exchange="NFO", tradingsymbol=symbol).lot_size
out = {{"lot": lot, "accounts": {{}}}}
for account in Account.objects.filter(broker_user_id__in={demo!r}).exclude(ownership="pending"):
    user = account.broker_user_id
    held = sum(PaperPosition.objects.filter(account__user_id=user, tradingsymbol=symbol)
               .values_list("quantity", flat=True))
    tags = list(PaperOrder.objects.filter(account__user_id=user).values_list("tag", flat=True))
    mappings = [[m.status, m.quantity, m.reason_code] for m in OrderMapping.objects.filter(child=account)]
    out["accounts"][user] = {{"broker": account.broker, "held": held, "tags": tags, "mappings": mappings}}
print(json.dumps(out))
"""


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _state(env: dict[str, str], symbol: str) -> dict:
    out = _manage(env, "shell", "-c", STATE.format(symbol=symbol, demo=list(MIXED_DEMO)))
    return json.loads(out.strip().splitlines()[-1])


def _held_lots(state: dict) -> dict[str, int]:
    return {name: row["held"] // state["lot"] for name, row in state["accounts"].items()}


def test_make_run_brokers_mixed_reproduces_the_worked_example_on_every_broker(tmp_path):
    env = _env(tmp_path)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ANGEL_API_ROOT", "KITE_API_ROOT", "DHAN_API_ROOT"):
        env.pop(name, None)
    for name in ("DHAN_WS_ROOT", "ALICE_API_ROOT"):
        env.pop(name, None)
    # A scheduled alert scan holds a worker up to ALERT_SCAN_SPAN_SECONDS (40): longer than the
    # runner's 20 s stop timeout when Ctrl-C lands during one (the scanner does not stop early).
    env["ALERT_SCAN_SPAN_SECONDS"] = "5"
    port, kite_port, angel_port = env["WEB_PORT"], str(_free_port()), str(_free_port())
    dhan_port, dhan_ws, alice_port, alice_ws = (str(_free_port()) for _ in range(4))
    kite_config, angel_config = tmp_path / "kite-sim.json", tmp_path / "angel-sim.json"
    dhan_config, alice_config = tmp_path / "dhan-sim.json", tmp_path / "alice-sim.json"
    # -o .env: never write a .env into the working tree; the configs go to tmp_path, not the tree.
    term = Terminal(
        [
            "make",
            "--no-print-directory",
            "-o",
            ".env",
            "run",
            "BROKERS=mixed",
            f"WEB_PORT={port}",
            f"KITE_SIM_PORT={kite_port}",
            f"ANGEL_SIM_PORT={angel_port}",
            f"KITE_SIM_CONFIG={kite_config}",
            f"ANGEL_SIM_CONFIG={angel_config}",
            f"DHAN_SIM_PORT={dhan_port}",
            f"DHAN_SIM_WS_PORT={dhan_ws}",
            f"DHAN_SIM_CONFIG={dhan_config}",
            f"ALICE_SIM_PORT={alice_port}",
            f"ALICE_SIM_WS_PORT={alice_ws}",
            f"ALICE_SIM_CONFIG={alice_config}",
        ],
        env,
    )
    try:
        term.wait_for(_ready(port), 240)
        for root in (
            ("angel", f"http://127.0.0.1:{angel_port}"),
            ("dhan", f"http://127.0.0.1:{dhan_port}"),
            ("dhan", f"ws://127.0.0.1:{dhan_ws}"),
            ("alice", f"http://127.0.0.1:{alice_port}/"),
        ):
            printed = re.compile(rf"{root[0]} +\| {re.escape(root[1])}")
            term.wait_for(lambda text, printed=printed: printed.search(text) is not None, 30)
        banner = (
            "MASTER1 on Kite, CHILD1,CHILD2 on Angel One, CHILD5 on Dhan, CHILD4 on Alice Blue, "
            "CHILD3 on paper."
        )
        assert banner in term.text
        assert "Staff login (shown once): staff / " in term.text
        for config in (angel_config, dhan_config, alice_config):
            assert oct(config.stat().st_mode & 0o777) == "0o600", config

        instruments = _manage(env, "paper", "instruments", "--underlying", "NIFTY")
        symbol = re.search(r"\bNIFTY\w*FUT\b", instruments)
        assert symbol is not None, instruments
        before = _state(env, symbol.group(0))
        assert {name: row["broker"] for name, row in before["accounts"].items()} == MIXED_BROKERS
        assert set(_held_lots(before).values()) == {0}

        _manage(env, "paper", "order", "MASTER1", "buy", f"NFO:{symbol.group(0)}", "2", "--lots")
        deadline = time.monotonic() + 60
        state = before
        while time.monotonic() < deadline:
            term.read(1.0)  # keep the terminal drained
            state = _state(env, symbol.group(0))
            if _held_lots(state) == WORKED_EXAMPLE_LOTS:
                break
        assert _held_lots(state) == WORKED_EXAMPLE_LOTS, (state, term.text[-4000:])
        children = state["accounts"]
        # C3 (paper) is skipped with its reason; the others were each placed once, under the engine's tag.
        assert [m[0] for m in children["CHILD3"]["mappings"]] == ["skipped"], children["CHILD3"]
        assert children["CHILD3"]["tags"] == []
        for name in ("CHILD1", "CHILD2", "CHILD4", "CHILD5"):
            placed = [m for m in children[name]["mappings"] if m[0] not in ("skipped", "failed")]
            assert sum(m[1] for m in placed) == WORKED_EXAMPLE_LOTS[name] * state["lot"], children[name]
            assert len(children[name]["tags"]) == len(set(children[name]["tags"])) == len(placed)
        # A Dhan or Alice Blue account's orders reach the paper book only through its simulator (its
        # adapter sends the simulator's credentials to a loopback root only): placed once per tag.
    finally:
        term.ctrl_c()
        code = term.finish(40)
    _assert_clean(term.text, code, {"sim", "angel", "dhan", "alice", "web", "engine", "worker"})
    for stopped in ("Kite", "Angel", "Dhan", "Alice Blue"):
        assert f"{stopped} simulator stopped." in term.text, stopped
    assert "Interrupt" not in term.text and "Error" not in term.text


def test_make_run_brokers_refuses_any_other_value():
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".env", "run", "BROKERS=angel"],
        cwd=BASE_DIR,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert 'BROKERS=angel is not a switch of make run: use "make run BROKERS=mixed"' in done.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("kite_sim", [False, True], ids=["make run", "make run KITE=sim"])
def test_after_the_mixed_demo_make_run_puts_the_demo_back(tmp_path, kite_sim):
    """`seed_demo` as `make run` runs it (after `make run BROKERS=mixed` moved four children) puts
    every seeded demo account back on paper, or with `--kite-sim` on Kite with simulator credentials."""
    call_command("paper", "seed", stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command("seed_demo", "--kite-sim", str(tmp_path / "k.json"), stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command(
        "angel_sim",
        "--link-demo",
        "CHILD1,CHILD2",
        "--paper-demo",
        "CHILD3",
        "--write-config",
        str(tmp_path / "a.json"),
        stdout=open(os.devnull, "w"),  # noqa: SIM115
    )
    call_command(
        "dhan_sim",
        "--link-demo",
        "CHILD5",
        "--write-config",
        str(tmp_path / "d.json"),
        stdout=open(os.devnull, "w"),  # noqa: SIM115
    )
    call_command(
        "alice_sim",
        "--link-demo",
        "CHILD4",
        "--write-config",
        str(tmp_path / "al.json"),
        stdout=open(os.devnull, "w"),  # noqa: SIM115
    )
    assert {a.broker_user_id: a.broker for a in Account.objects.all()} == MIXED_BROKERS

    flags = ["--kite-sim", str(tmp_path / "k2.json")] if kite_sim else []
    call_command("seed_demo", *flags, stdout=open(os.devnull, "w"))  # noqa: SIM115

    want = Broker.KITE if kite_sim else Broker.PAPER
    # seed_demo puts every demo account back, CHILD5 from Dhan included.
    accounts = list(Account.objects.filter(broker_user_id__in=DEMO))
    assert sorted(a.broker_user_id for a in accounts) == sorted(DEMO)  # moved, not duplicated
    assert {a.broker_user_id: a.broker for a in accounts} == dict.fromkeys(DEMO, want)
    for account in accounts:
        assert not account.secret("pin") and not account.secret("totp_secret"), account.broker_user_id
    if kite_sim:
        config = json.loads((tmp_path / "k2.json").read_text())
        assert sorted(app["user_id"] for app in config["apps"]) == sorted(DEMO)
