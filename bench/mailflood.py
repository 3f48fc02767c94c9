"""P7f: how long a coordinator's `lixiao set` waits while the daemon takes a flood of mail (real Dovecot and
aiosmtpd on loopback, a real `lixiao watch`).

Usage (root, after `make install`; needs Debian's dovecot-imapd):  .venv/bin/python -m bench.mailflood

One mail with 20 ticked workbooks (the [mail] max_attachments default: all taken) and one with 150 (refused whole)
are sent to the coordinator's mailbox while the daemon polls it every second; meanwhile `lixiao set` runs back to
back as a separate process. Reported: `set` alone (no daemon), and every `set` during the fetch — the longest is
the interactive wait the issue bounds (goal: at most 2 s more than `set` alone). The fetch takes the writer lock
per workbook, never across the mail server's answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.mail import PASSWORD_ENV, RESULTS, XLSX, _folder, _mail, _returns, _wait
from tests.realclients.mailservers import missing_mail_tools, running_mail_servers

STEP = "party_transfer"  # the first step of the flow: no prerequisite, so every set is a write


def _set(data: Path, student: str, status: str) -> float:
    env = {**os.environ, PASSWORD_ENV: os.environ[PASSWORD_ENV]}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), "set", student, STEP,
                           status, "--operator", "基准"], capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stdout + done.stderr)
    return seconds


def run(students: int, small: int, flood: int) -> dict[str, object]:
    """The measurement; the result document."""
    with running_mail_servers() as servers, tempfile.TemporaryDirectory(prefix="lixiao-bench-flood-") as work:
        root = Path(work)
        coordinator = (servers.add_user("coordinator", "c-pw"), "c-pw")
        office = servers.add_user("dorm", "d-pw")
        os.environ[PASSWORD_ENV] = coordinator[1]
        data = _folder(root, students, servers, coordinator, office)
        returns = _returns(data, small)
        target = _student_numbers(data)[0]
        alone = [_set(data, target, ("passed", "pending")[i % 2]) for i in range(6)]
        env = {**os.environ}
        daemon = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), "watch"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        during: list[float] = []
        try:
            time.sleep(3)
            before = len(servers.inbox(office, "d-pw"))
            twenty = _mail(office, coordinator[0], "宿管-0.xlsx", returns[0])
            for i, payload in enumerate(returns[1:small], start=1):
                twenty.add_attachment(payload, maintype=XLSX[0], subtype=XLSX[1], filename=f"宿管-{i}.xlsx")
            many = _mail(office, coordinator[0], "洪水-0.xlsx", returns[0])
            for i in range(1, flood):
                many.add_attachment(returns[i % small], maintype=XLSX[0], subtype=XLSX[1], filename=f"洪水-{i}.xlsx")
            servers.send(office, "d-pw", many, [coordinator[0]])
            servers.send(office, "d-pw", twenty, [coordinator[0]])
            started = time.perf_counter()
            while len(servers.inbox(office, "d-pw")) < before + 2 and time.perf_counter() - started < 180:
                during.append(_set(data, target, ("passed", "pending")[len(during) % 2]))
            fetch_seconds = _wait(lambda: len(servers.inbox(office, "d-pw")) >= before + 2, 5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    base = statistics.median(alone)
    return {
        "students": students, "attachments_taken": small, "attachments_refused": flood,
        "set_alone_median_s": round(base, 3), "set_during_fetch_s": [round(x, 2) for x in during],
        "set_during_fetch_max_s": round(max(during), 3) if during else None,
        "longest_wait_beyond_alone_s": round(max(during) - base, 3) if during else None,
        "until_both_replies_s": round(time.perf_counter() - started - fetch_seconds, 1),
    }


def _student_numbers(data: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(data / "store.db") as conn:
        return [r[0] for r in conn.execute("SELECT student_no FROM students ORDER BY student_no LIMIT 5")]


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=600)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--flood", type=int, default=150)
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    missing = missing_mail_tools()
    if missing:
        sys.exit(f"bench.mailflood needs the mail servers: {missing}")
    result = run(args.students, args.small, args.flood)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mailflood.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main_()
