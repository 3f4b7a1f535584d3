"""Keeps the portal's processes running: each child in its own process group, a dead one restarted with
backoff while the others go on, every state change written to a status file (what /healthz reports),
and on stop every process it started ended, grandchildren included, within a bound.

Plain Python (no Django), so it can be tested with any commands.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

FIRST_DELAY, MAX_DELAY = 0.5, 30.0  # seconds before a restart, doubling after each quick death
STABLE_AFTER = 60.0  # a child that ran this long had no quick death: its next restart waits FIRST_DELAY again
STOP_SECONDS = 15.0  # on stop, children get this long to end themselves, then their groups are killed
PR_SET_PDEATHSIG = 1
try:  # looked up here, not in the forked child
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children then outlive a SIGKILLed supervisor
    _prctl = None


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child before exec: `sig` when the supervisor dies, even by SIGKILL (Linux), so its own
    session does not turn it into an orphan that keeps a port."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, sig)


@dataclass
class Child:
    name: str
    command: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    next_start: float = 0.0  # while down: when (time.monotonic()) the next start is due
    problem: str = ""  # while down: why

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """`sig` to whatever is left of the child's process group (gunicorn's workers, qcluster's)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], *, cwd: Path, status_path: Path | None = None,
                 say: Callable[[str], None] = print, first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY,
                 stable_after: float = STABLE_AFTER, stop_seconds: float = STOP_SECONDS, pass_fds: tuple = (),
                 death_signal: int = signal.SIGTERM, on_death: Callable[[Child], None] | None = None):
        """`pass_fds`: file descriptors every child inherits (a listening socket they share).
        `death_signal`: what a child gets when this supervisor dies. `on_death(child)`: told of each
        death once it is noticed (its `quick_deaths` say whether it keeps dying); it must not block."""
        self.children = [Child(name, command) for name, command in commands.items()]
        self.cwd, self.status_path, self.say = cwd, status_path, say
        self.first_delay, self.max_delay, self.stable_after = first_delay, max_delay, stable_after
        self.stop_seconds, self.pass_fds, self.death_signal = stop_seconds, tuple(pass_fds), death_signal
        self.on_death = on_death

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)
        self.write_status()

    def _start(self, child: Child) -> None:
        child.kill_group()  # what a dead leader left behind must not run twice or hold its port
        child.proc = subprocess.Popen(child.command, cwd=self.cwd, start_new_session=True, pass_fds=self.pass_fds,
                                      preexec_fn=functools.partial(_die_with_parent, self.death_signal))
        child.started_at, child.problem = time.monotonic(), ""
        self.say(f"started {child.name} (pid {child.proc.pid})")

    def poll(self) -> None:
        """Notice deaths, schedule restarts with backoff, start what is due; call this every fraction of a second."""
        now, changed = time.monotonic(), False
        for child in self.children:
            if child.proc is not None and not child.problem and child.proc.poll() is not None:
                ran = now - child.started_at
                child.quick_deaths = 0 if ran >= self.stable_after else child.quick_deaths + 1
                delay = min(self.max_delay, self.first_delay * 2 ** max(child.quick_deaths - 1, 0))
                child.next_start = now + delay
                child.problem = f"exited with code {child.proc.returncode} after {ran:.0f} s; restarting in {delay:g} s"
                self.say(f"{child.name} {child.problem}")
                if self.on_death is not None:
                    self.on_death(child)
                changed = True
            elif child.problem and now >= child.next_start:
                child.restarts += 1
                self._start(child)
                changed = True
        if changed:
            self.write_status()

    def status(self) -> dict:
        return {"supervisor": os.getpid(),
                "parts": {c.name: {"up": c.up and not c.problem, "pid": c.proc.pid if c.proc else None,
                                   "restarts": c.restarts, "problem": c.problem} for c in self.children}}

    def write_status(self) -> None:
        if self.status_path is None:
            return
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self.status()))
        partial.replace(self.status_path)  # a reader never sees half a file

    def stop_all(self) -> None:
        """SIGTERM each child (it stops its own children its own way), SIGKILL the process groups of those
        still there after stop_seconds, then of all: nothing this supervisor started outlives it."""
        running = [c for c in self.children if c.up]
        for child in running:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_seconds
        for child in running:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {self.stop_seconds:g} s; killing its process group")
        for child in self.children:
            child.kill_group()
            if child.proc is not None:
                child.proc.wait()
        if self.status_path is not None:
            self.status_path.unlink(missing_ok=True)
