"""The benchmark and the crash loop keep working (tiny sizes; the real figures come from running them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_crash_loop_reports_zero_problems() -> None:
    """Three kill-and-restart runs: the script's own checks find nothing wrong (exit 0)."""
    done = subprocess.run([sys.executable, "bench/crash_loop.py", "--runs", "3", "--students", "60", "--files", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inconsistent=0 lost=0 double-applied=0 wrong result=0" in done.stdout


def test_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    """`python -m bench.run` on a small cohort prints the table and writes results JSON."""
    results = ROOT / "bench" / "results" / "latest.json"
    before = results.read_bytes() if results.exists() else None
    try:
        done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--students", "400", "--p2-rows", "300"],
                              cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "| 400 | P1_issue |" in done.stdout and "P5_burst" in done.stdout
        data = json.loads(results.read_text("utf-8"))
        row = data["cohorts"]["400"]
        assert row["P5_burst"]["left_in_inbox"] == 0 and row["P5_burst"]["merged"] == row["P5_burst"]["files"]
        assert row["P2_daemon_300"]["result"]["applied"] > 0 and row["P2_daemon_ratio_300"] > 0
        assert row["P2_command_300"]["result"] == 0 and row["P2_command_ratio_300"] > 0
        assert "| 400 | P2_daemon_300 |" in done.stdout and "| 400 | P2_command_with_reports_300 |" in done.stdout
        assert "| 400 | P4_report_late |" in done.stdout and row["P4_ratio_late"] > 0
        assert row["P4_report_command_late"]["result"] == 0
        assert "| 400 | P7_status |" in done.stdout and row["P7_status"]["seconds"]["median"] > 0
        assert "| 400 | P8_verify |" in done.stdout and row["P8_ratio"] > 0
    finally:
        if before is not None:
            results.write_bytes(before)


def test_alignment_benchmark_runs_and_finds_no_wrong_result() -> None:
    """`python -m bench.alignment` on a tiny cohort (openpyxl sorts and two LibreOffice sorts): whole-row sorts
    give no wrong result and no refused row, every partial sort is caught."""
    done = subprocess.run([sys.executable, "-m", "bench.alignment", "--students", "60", "--runs", "12",
                           "--libreoffice", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = json.loads(done.stdout[done.stdout.index("{"):])
    assert counts["whole_wrong_result"] == 0 and counts["whole_false_rows"] == 0
    assert counts["partial_caught"] == counts["partial_runs"]
    assert counts["lo_runs"] == 2 and counts["lo_wrong_result"] == 0 and counts["lo_false_rows"] == 0
