"""P7 and P8: the interactive commands (`--help`, `status`, `set`, `history`, `waivers`) and a full `lixiao verify`,
each as a user runs it — a whole process — on the late-session folder, next to the bare libraries doing the least
the same answer needs, in the same run."""

from __future__ import annotations

import hashlib
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS = (("help", ["--help"]), ("status", ["status", "{no}"]), ("set", ["set", "{no}", "electricity", "{flip}"]),
            ("history", ["history", "{no}"]), ("waivers", ["waivers"]))
BARE_LOOKUP = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
row = db.execute("SELECT * FROM students WHERE student_no = ?", [sys.argv[2]]).fetchone()
steps = db.execute("SELECT step, status, remark FROM statuses WHERE student_no = ?", [sys.argv[2]]).fetchall()
print(row[1], len(steps))
"""


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(" ".join(argv) + ": " + done.stdout + done.stderr)
    return elapsed


def stats(values: list[float]) -> dict[str, float]:
    """min, median and max (every figure of the bench)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def interactive(root: Path, repeats: int) -> dict[str, Any]:
    """P7: each command's whole-process seconds (min/median/max) and the bare lookup's, in the same run."""
    db = sqlite3.connect(root / "store.db")
    count = db.execute("SELECT count(*) FROM students").fetchone()[0]
    no = db.execute("SELECT student_no FROM students ORDER BY student_no LIMIT 1 OFFSET ?", [count // 2]).fetchone()[0]
    db.close()
    lixiao = [sys.executable, "-m", "lixiao.sync.cli", "--data", str(root)]
    result: dict[str, Any] = {}
    for name, args in COMMANDS:
        times = []
        for run in range(repeats):
            argv = [a.format(no=no, flip="passed" if run % 2 else "pending") for a in args]
            times.append(_timed(lixiao + argv if name != "help" else [sys.executable, "-m", "lixiao.sync.cli",
                                                                       "--help"]))
        result[f"P7_{name}"] = {"seconds": stats(times)}
    bare = [_timed([sys.executable, "-c", BARE_LOOKUP, str(root / "store.db"), no]) for _ in range(repeats)]
    result["P7_bare_sqlite3_lookup"] = {"seconds": stats(bare)}
    return result


def bare_chain(db_path: Path) -> float:
    """The least a verify does: read every audit event and hash it (sqlite3 + hashlib, in this process)."""
    started = time.monotonic()
    db = sqlite3.connect(db_path)
    digest = hashlib.sha256()
    for row in db.execute("SELECT * FROM audit ORDER BY seq"):
        digest.update(repr(row).encode())
    db.execute("PRAGMA quick_check").fetchall()
    db.close()
    return time.monotonic() - started


def verify(root: Path, repeats: int) -> dict[str, Any]:
    """P8: `lixiao verify` whole process, against the bare chain read + quick_check."""
    ours = [_timed([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "verify"]) for _ in range(repeats)]
    bare = [bare_chain(root / "store.db") for _ in range(repeats)]
    result = {"P8_verify": {"seconds": stats(ours)}, "P8_bare_chain_read": {"seconds": stats(bare)}}
    result["P8_ratio"] = result["P8_verify"]["seconds"]["median"] / result["P8_bare_chain_read"]["seconds"]["median"]
    return result
