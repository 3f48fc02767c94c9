"""Measure how long each hostile corpus file takes to classify, and the parser child's peak memory.

Usage (from the repository root): python -m bench.corpus
Prints one line per case: the reason code, wall time (parent sniff + limited child), the child's
peak RSS, and whether the verdict matched. The limits are those of workbooks/sandbox.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lixiao.core.feeds.synthetic import make_cohort
from lixiao.sync.datafolder import init_folder
from lixiao.sync.issuing import issue_workbooks, plan_all
from lixiao.workbooks.sniff import sniff
from tests.hostile_corpus import cases


def child_parse(data: bytes, key: bytes) -> tuple[str, float, int]:
    """Run the sandbox child like parse_untrusted does; return (answer, seconds, peak RSS in MiB)."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "lixiao.workbooks.sandbox"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(key.hex().encode() + b"\n" + data)
    child.stdin.close()
    answer = child.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = status
    return answer, time.monotonic() - started, usage.ru_maxrss // 1024


def main() -> int:
    """Build one small issued workbook, run every corpus case through sniff and the child, print a table."""
    with tempfile.TemporaryDirectory(prefix="lixiao-corpus-") as work:
        folder = init_folder(Path(work) / "d", "undergrad", "2026届本科毕业生离校", 2026)
        folder.store.upsert_students(make_cohort(200).students, source="bench")
        issue_workbooks(folder, plan_all(folder, ["utilities"], None))
        key = bytes.fromhex((folder.root / ".secret").read_text())
        workbook = next((folder.root / "outbox" / "utilities").glob("*.xlsx")).read_bytes()
        folder.close()
        print(f"{'case':<22} {'expected':<20} {'got':<20} {'seconds':>8} {'child MiB':>10}")
        wrong = 0
        for name, builder, code in cases():
            data = builder(workbook)
            started = time.monotonic()
            verdict = sniff(data)
            if verdict.ok:
                answer, _, peak = child_parse(data, key)
                got = answer.split('"code": "')[1].split('"')[0] if '"code": "' in answer else answer[:20]
            else:
                got, peak = verdict.code, 0
            seconds = time.monotonic() - started
            wrong += got != code
            print(f"{name:<22} {code:<20} {got:<20} {seconds:>8.2f} {peak:>10}")
        return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
