"""Who holds a lease: host, pid and process start time, and whether that process is provably gone.

A lease owner reads `host:pid:start`. The start time tells a live process from a new one that
reused the pid, so a rerun after a crash can take the dead run's rows at once instead of waiting
for their leases to run out. Only a process on this host can be proven dead; a worker on another
machine keeps its rows until its lease runs out.
"""

from __future__ import annotations

import os
import socket
from functools import cache

import psutil

HOST_CHARS = 60
"""The host part is cut to this, so an owner fits the 100-character lease column."""


@cache
def host() -> str:
    """This machine's name as leases carry it."""
    return socket.gethostname()[:HOST_CHARS].replace(":", "_")


def _started(pid: int) -> str | None:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped: gone all the same
            return None
        return f"{process.create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return "unknown"  # not ours to inspect (another user's): assume it lives


def this_process() -> str:
    """The lease owner naming this process."""
    pid = os.getpid()
    return f"{host()}:{pid}:{_started(pid)}"


def is_dead(owner: str) -> bool:
    """True only when the owner ran on this host and its process is gone (or the pid was reused)."""
    parts = owner.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit():
        owner_host, pid, started = parts[0], int(parts[1]), parts[2]
    else:
        # An owner written before leases carried a start time: "host:pid".
        owner_host, _, pid_text = owner.rpartition(":")
        if not pid_text.isdigit():
            return False
        pid, started = int(pid_text), ""
    if owner_host != host():
        return False
    now_started = _started(pid)
    if now_started is None:
        return True
    if now_started == "unknown" or not started:
        return False
    return now_started != started
