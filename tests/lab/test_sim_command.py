"""The simulator commands' shared refusals (lab.sim_command): each of angel_sim, dhan_sim and
alice_sim refuses, before serving anything, what it cannot serve."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

COMMANDS = ["angel_sim", "dhan_sim", "alice_sim"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_port_is_required_to_serve(command):
    with pytest.raises(CommandError, match="--port is required to serve"):
        call_command(command)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_port_out_of_range_is_refused(command):
    with pytest.raises(CommandError, match="--port must be between 0 and 65535, got 70000"):
        call_command(command, port=70000)


@pytest.mark.parametrize("command", ["dhan_sim", "alice_sim"])
def test_a_socket_port_out_of_range_is_refused(command):
    with pytest.raises(CommandError, match="--ws-port must be between 0 and 65535, got -1"):
        call_command(command, port=0, ws_port=-1)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreadable_config_is_refused(command, tmp_path):
    broken = tmp_path / "sim.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match=r"cannot read .*sim\.json"):
        call_command(command, port=0, config=broken)
    with pytest.raises(CommandError, match=r"cannot read .*missing\.json"):
        call_command(command, port=0, config=tmp_path / "missing.json")


@pytest.mark.parametrize("command", COMMANDS)
def test_link_demo_needs_a_config_path_and_user_ids(command, tmp_path):
    with pytest.raises(CommandError, match="--link-demo needs --write-config PATH"):
        call_command(command, link_demo="CHILD1")
    with pytest.raises(CommandError, match="--link-demo: no user ids"):
        call_command(command, link_demo=" , ", write_config=tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
