"""Kill `lixiao sync` at random moments, restart it, and count what went wrong (the answer must be 0).

Usage: python bench/crash_loop.py [--runs 200] [--students 300] [--files 4] [--seed 1]

Each run copies a prepared data folder, drops the same returned workbooks into inbox/, starts
`lixiao sync` as a child process, SIGKILLs it after a random delay (uniform over the time a clean
sync takes), then runs sync again until the inbox is empty. It then checks: SQLite integrity, the
audit hash chain, the archive against the ledger (`lixiao verify`'s checks); every file merged
exactly once (one 'return merged' audit event per file hash, one status event per applied cell);
and the final statuses and versions equal those of a run without any kill.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lixiao.core.feeds.synthetic import make_cohort
from lixiao.sync.datafolder import init_folder, open_folder
from lixiao.sync.demo.officesim import tick_workbook
from lixiao.sync.issuing import issue_workbooks, plan_all
from lixiao.sync.takeback.integrity import folder_problems


def prepare(root: Path, students: int, files: int, seed: int) -> list[tuple[str, bytes]]:
    """A data folder with a cohort and issued workbooks, and the returned files to drop."""
    folder = init_folder(root, "undergrad", "2026届本科毕业生离校", 2026)
    folder.store.upsert_students(make_cohort(students, seed=seed).students, source="crash-loop")
    issue_workbooks(folder, plan_all(folder, ["utilities", "dorm", "student_affairs", "network"], None))
    rng = random.Random(seed)
    returned = []
    for path in sorted((root / "outbox").rglob("*.xlsx"))[:files]:
        returned.append((path.name, tick_workbook(path, rng, 0.7, "崩溃测试")))
    folder.close()
    return returned


def run_sync(data: Path, kill_after: float | None) -> bool:
    """Run `lixiao sync` once; SIGKILL it after ``kill_after`` seconds. True when it was killed mid-run."""
    child = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(data), "sync"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        child.wait(timeout=600)
        return False
    try:
        child.wait(timeout=kill_after)
        return False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return True


def state(data: Path) -> tuple[list[tuple[str, str, str, int]], dict[str, int], dict[str, int]]:
    """Final statuses (with versions), merges per file hash and status events per file hash."""
    with sqlite3.connect(data / "store.db") as conn:
        statuses = sorted(conn.execute("SELECT student_no, step, status, version FROM statuses"))
        merges = dict(conn.execute("SELECT source_hash, count(*) FROM audit WHERE kind = 'return' "
                                   "AND decision = 'merged' GROUP BY source_hash"))
        writes = dict(conn.execute("SELECT source_hash, count(*) FROM audit WHERE kind = 'status' "
                                   "GROUP BY source_hash"))
    return statuses, merges, writes


def drop(data: Path, files: list[tuple[str, bytes]]) -> None:
    """Put the returned files into the inbox, old enough to count as complete."""
    past = time.time() - 60
    for name, content in files:
        path = data / "inbox" / name
        path.write_bytes(content)
        os.utime(path, (past, past))


def main() -> int:
    """Run the loop and print the counts; exit 1 when any run went wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lixiao-crash-"))
    try:
        template = work / "template"
        files = prepare(template, args.students, args.files, args.seed)
        reference = work / "reference"
        shutil.copytree(template, reference)
        drop(reference, files)
        started = time.monotonic()
        run_sync(reference, None)
        clean_seconds = time.monotonic() - started
        expected_statuses, expected_merges, expected_writes = state(reference)
        hashes = {hashlib.sha256(content).hexdigest() for _, content in files}
        assert set(expected_merges) == hashes, "the clean run did not merge every file"
        rng = random.Random(args.seed)
        counts = {"runs": 0, "killed mid-run": 0, "inconsistent": 0, "lost": 0, "double-applied": 0,
                  "wrong result": 0}
        for index in range(args.runs):
            data = work / f"run-{index}"
            shutil.copytree(template, data)
            drop(data, files)
            counts["killed mid-run"] += run_sync(data, rng.uniform(0.0, clean_seconds * 1.1))
            for _ in range(3):
                if not any(p for p in (data / "inbox").iterdir() if p.suffix == ".xlsx"):
                    break
                run_sync(data, None)
            folder = open_folder(data)
            problems = folder_problems(folder)
            folder.close()
            statuses, merges, writes = state(data)
            counts["runs"] += 1
            counts["inconsistent"] += bool(problems)
            counts["lost"] += len(hashes - set(merges))
            counts["double-applied"] += sum(1 for h in hashes if merges.get(h, 0) > 1
                                           or writes.get(h, 0) != expected_writes.get(h, 0))
            counts["wrong result"] += statuses != expected_statuses
            if problems:
                print(f"run {index}: {problems[:3]}", file=sys.stderr)
            shutil.rmtree(data)
            if (index + 1) % 20 == 0:
                print(f"{index + 1}/{args.runs} {counts}", flush=True)
        print(f"clean sync of {len(files)} files: {clean_seconds:.2f} s")
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
        bad = counts["inconsistent"] + counts["lost"] + counts["double-applied"] + counts["wrong result"]
        return 1 if bad else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
