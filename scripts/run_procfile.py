"""Run the processes of a Procfile in the foreground until Ctrl-C, then stop every one cleanly.

`make run` starts its processes with this instead of `honcho start`: the same Procfile, the same
`name | line` output, but Ctrl-C ends with exit 0 and nothing left running.

- Each process runs in its own session (as with honcho), through `/bin/sh -c`; Procfile lines
  `exec` their command, so the process the runner signals is the command itself.
- Ctrl-C, SIGTERM or SIGHUP sends SIGINT to each process's group: what Ctrl-C sends each one in a
  terminal. runserver, run_orchestrator (it finishes its tick), qcluster, kite_sim and
  master_stream all exit 0 on it. (honcho sends SIGTERM to the group, which kills django-q2's
  sentinel at once and leaves the cluster waiting for it until honcho's SIGKILL.)
- A group still alive STOP_TIMEOUT seconds later (RUN_STOP_TIMEOUT, default 20) is killed (SIGKILL)
  and the exit status is 1. A second Ctrl-C kills at once.
- A process that ends by itself stops the others; the exit status is its own (1 if it was 0).
- Exit 0: stopped by a signal, every process exited 0 and no process of theirs is left.

From a terminal, the runner makes its own process group the terminal's foreground group while it
runs, so that Ctrl-C reaches it and not make (which would print "Interrupt" and exit non-zero
whatever its recipe did), and gives the terminal back to make when it ends.

Usage: python scripts/run_procfile.py [PROCFILE]   (default: Procfile)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO

SYSTEM = "system"
STOP_SIGNAL = signal.SIGINT
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ProcfileError(ValueError):
    pass


def parse_procfile(text: str) -> list[tuple[str, str]]:
    """(name, command) for each `name: command` line; blank lines and `#` comments skipped."""
    entries: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon or not name or not command or not name.replace("-", "").replace("_", "").isalnum():
            raise ProcfileError(f"line {number}: expected `name: command`, got {raw!r}")
        if name in dict(entries):
            raise ProcfileError(f"line {number}: process {name!r} is listed twice")
        entries.append((name, command))
    if not entries:
        raise ProcfileError("no process listed")
    return entries


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    pump: threading.Thread
    reported: bool = False


class Runner:
    def __init__(self, entries: list[tuple[str, str]], *, out: IO[str], stop_timeout: float) -> None:
        self.entries = entries
        self.out = out
        self.stop_timeout = stop_timeout
        self.width = max(len(name) for name, _ in [*entries, (SYSTEM, "")])
        self.lock = threading.Lock()
        self.children: list[Child] = []
        self.signals: list[int] = []  # received, handled by the main loop (never inside the handler)

    def say(self, name: str, text: str) -> None:
        with self.lock:
            self.out.write(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    def start(self) -> None:
        for name, command in self.entries:
            process = subprocess.Popen(  # noqa: S602  (the Procfile's own lines, as honcho runs them)
                command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert process.stdout is not None
            pump = threading.Thread(target=self._pump, args=(name, process.stdout), daemon=True)
            pump.start()
            self.children.append(Child(name, process, pump))
            self.say(SYSTEM, f"{name} started (pid={process.pid})")

    def _stop_all(self, signum: int) -> None:
        for child in self.children:
            if child.process.poll() is None or _group_alive(child.process.pid):
                _signal_group(child.process.pid, signum)

    def run(self) -> int:
        """Start every process, wait for a signal or an exit, stop the rest; the exit status."""
        self.start()
        stopping_since: float | None = None
        stopped_by_signal = False
        killed = False
        first_exit: tuple[str, int] | None = None
        while True:
            while self.signals:
                signum = self.signals.pop(0)
                name = signal.Signals(signum).name
                if stopping_since is None:
                    stopped_by_signal = True
                    stopping_since = time.monotonic()
                    self.say(SYSTEM, f"{name} received: stopping every process (SIGINT to each)")
                    self._stop_all(STOP_SIGNAL)
                elif not killed:
                    self.say(SYSTEM, f"{name} received again: killing every process")
                    self._stop_all(signal.SIGKILL)
                    killed = True
            for child in self.children:
                code = child.process.poll()
                if code is not None and not child.reported:
                    child.reported = True
                    self.say(SYSTEM, f"{child.name} stopped (rc={code})")
                    if stopping_since is None:
                        first_exit = (child.name, code)
                        stopping_since = time.monotonic()
                        self.say(SYSTEM, f"{child.name} ended by itself: stopping the others")
                        self._stop_all(STOP_SIGNAL)
            # Done when every process has exited and nothing of theirs (their own children) is left.
            if all(c.reported and not _group_alive(c.process.pid) for c in self.children):
                break
            overdue = stopping_since is not None and time.monotonic() - stopping_since > self.stop_timeout
            if overdue and not killed:
                left = ", ".join(c.name for c in self.children if _group_alive(c.process.pid))
                self.say(SYSTEM, f"still running after {self.stop_timeout:g}s: {left}; killing")
                self._stop_all(signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        for child in self.children:
            child.pump.join(timeout=2)
        codes = {c.name: c.process.returncode for c in self.children}
        if first_exit is not None:
            name, code = first_exit
            status = code if code > 0 else (128 - code if code < 0 else 1)
            self.say(SYSTEM, f"exit {status}: {name} ended by itself")
            return status
        if killed or any(code != 0 for code in codes.values()):
            self.say(SYSTEM, "exit 1: " + ", ".join(f"{n} rc={c}" for n, c in codes.items()))
            return 1
        if stopped_by_signal:
            self.say(SYSTEM, "every process stopped cleanly")
        return 0


def take_terminal() -> Callable[[], None]:
    """Make this process's own group the terminal's foreground group (when it runs in the
    foreground of a terminal); returns what gives the terminal back."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
            return lambda: None
        previous = os.tcgetpgrp(fd)
        os.setpgid(0, 0)
    except OSError:
        return lambda: None
    # A background group that sets the foreground group gets SIGTTOU; Ctrl-Z would stop the runner
    # while make waits, with no shell job to resume it.
    for signum in (signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, os.getpgrp())
    except OSError:
        return lambda: None

    def give_back() -> None:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, previous)

    return give_back


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("Procfile")
    try:
        entries = parse_procfile(path.read_text(encoding="utf-8"))
    except (OSError, ProcfileError) as exc:
        sys.stderr.write(f"run_procfile: {path}: {exc}\n")
        return 2
    runner = Runner(entries, out=sys.stdout, stop_timeout=float(os.environ.get("RUN_STOP_TIMEOUT", "20")))
    for signum in STOP_SIGNALS:
        signal.signal(signum, runner.on_signal)
    give_back = take_terminal()
    try:
        return runner.run()
    finally:
        give_back()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
