"""Fault injection for the fault tests (LIXIAO_FAULT=POINT:ACTION): the one place it is read; unset, nothing
here does anything but one environment lookup."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import time

ENV_VAR = "LIXIAO_FAULT"


class InjectedFaultError(RuntimeError):
    """A failure raised on purpose at a fault point (LIXIAO_FAULT=POINT:raise)."""


def fault_point(name: str, subject: str = "") -> None:
    """At point ``name``: sleep N seconds, fail like a full disk (diskfull, enospc), raise, or die (kill).

    ``raise`` fails every time; ``raise:SUBJECT`` only when the caller's ``subject`` (a file name) matches.
    """
    spec = os.environ.get(ENV_VAR, "")
    if not spec.startswith(name + ":"):
        return
    action = spec.split(":", 1)[1]
    if action == "raise" or action == f"raise:{subject}":
        raise InjectedFaultError(f"注入的故障（{ENV_VAR}={spec}）")
    if action.startswith("raise:"):
        return
    if action == "diskfull":
        raise sqlite3.OperationalError("database or disk is full")
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if action == "kill":  # the crash tests: die here as kill -9 would
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(action))


def fault_action(name: str) -> str:
    """The action set for point ``name`` ("" when none): for points whose actions are their own (the sandboxed
    parser's abort, hang and memory)."""
    spec = os.environ.get(ENV_VAR, "")
    return spec.split(":", 1)[1] if spec.startswith(name + ":") else ""
