"""Processes we started and track by PID file: is it ours, is it alive, stop it for good."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from agad_stream.errors import AgadError


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def running_pid(pidfile: Path, marker: str) -> int | None:
    """The PID in ``pidfile`` if that process is alive and its command line contains ``marker``.

    The marker check keeps a stale PID file from pointing us at an unrelated process that
    happens to have been given the same PID after a reboot.
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if _is_zombie(pid) or marker not in _cmdline(pid):
        return None
    return pid


def stop_process(pid: int, name: str, timeout_s: float = 30.0) -> None:
    """SIGTERM, wait for a clean exit, then SIGKILL: no process is left behind."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _is_zombie(pid):
            _reap(pid)
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        if _is_zombie(pid):
            _reap(pid)
            return
        time.sleep(0.1)
    raise AgadError(f"{name} (PID {pid}) did not exit after SIGKILL; check `ps -p {pid}`")


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child; harmless otherwise."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(ready: Callable[[], bool], timeout_s: float, what: str, alive: Callable[[], bool]) -> None:
    """Poll ``ready`` until it is true; fail early if the process died, or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise AgadError(f"{what} exited during start-up")
        time.sleep(0.5)
    raise AgadError(f"{what} was not ready after {timeout_s:.0f} s")
