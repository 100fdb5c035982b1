"""What the simulator commands (`manage.py angel_sim`, `dhan_sim`, `alice_sim`) share: reading the
`--config` file, checking ports, serving until SIGTERM or Ctrl-C, and `--link-demo`'s move of demo
accounts with the 0600 `--write-config` file. Each command keeps its options, its simulator and its
words."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from accounts.validation import AccountError
from lab.kite_sim.faults import FaultSpecError

# What a simulator can raise while it is configured and bound (a bad config, a taken port).
START_ERRORS = (ValueError, KeyError, TypeError, FaultSpecError, OSError)


class Running(Protocol):
    def stop(self) -> None: ...


def read_config(path: Path | None) -> dict[str, Any] | None:
    """The `--config` file's JSON (None without one); CommandError when it cannot be read."""
    if path is None:
        return None
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    return config


def check_ports(options: dict[str, Any], names: Iterable[str]) -> None:
    """Each named port option between 0 and 65535 (0: any free port)."""
    for name in names:
        if not 0 <= options[name] <= 65535:
            raise CommandError(f"--{name.replace('_', '-')} must be between 0 and 65535, got {options[name]}")


def serve_until_signalled(
    command: BaseCommand, running: Running, *, lines: Iterable[str], label: str
) -> None:
    """Print `lines` (the URLs to point the adapter at), wait for SIGTERM or SIGINT, stop `running`
    and say "<label> simulator stopped."."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    for line in lines:
        command.stdout.write(line)
    command.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    command.stdout.write(f"{label} simulator stopped.")


def link_demo(
    command: BaseCommand,
    *,
    user_ids: str,
    path: Path | None,
    broker: str,
    account_field: str,
    make_config: Callable[[list[str]], dict[str, Any]],
) -> None:
    """`--link-demo`: move the demo accounts to `broker` (`make_config`), write the config file."""
    if path is None:
        raise CommandError("--link-demo needs --write-config PATH")
    wanted = [u.strip() for u in user_ids.split(",") if u.strip()]
    if not wanted:
        raise CommandError("--link-demo: no user ids")
    try:
        config = make_config(wanted)
    except (Account.DoesNotExist, AccountError) as exc:
        raise CommandError(f"cannot move {', '.join(wanted)} to {broker}: {exc}") from None
    write_private_json(path, config)
    moved = ", ".join(c[account_field] for c in config["clients"])
    command.stdout.write(f"moved {moved} to {broker}; wrote {path}")


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with `data` as JSON, readable by its owner only (0600)."""
    fd, temporary = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
