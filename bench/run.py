"""The lixiao benchmark: P1–P8 on synthetic cohorts, each against the bare library doing the same I/O.

Usage (from the repository root, after `make install`):  .venv/bin/python -m bench.run [--quick]
--quick: the 8,500-student cohort only, fewer repeats. Prints a table and writes bench/results/latest.json.
Figures are min / median / max over repeats; ratios compare medians measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xlsxwriter

from bench.bare import bare_issue
from bench.interactive import interactive, stats, verify
from bench.takeback import bare_command, bare_in_process, daemon_take_back, sync_command
from lixiao.core.feeds.synthetic import make_cohort
from lixiao.core.manual.flow import load_flow_file
from lixiao.core.manual.model import Status
from lixiao.reports.build import render_report
from lixiao.sync.datafolder import init_folder, open_folder
from lixiao.sync.demo.officesim import libreoffice_resave, tick_workbook
from lixiao.sync.issuing import issue_workbooks, plan_all, plan_each

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "workbooks", "sync", "reports")


def in_child(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run fn in a forked child: (its JSON-able result, seconds, peak RSS MiB of the child)."""
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        try:
            payload = json.dumps({"ok": fn()}, default=str).encode()
        except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = json.loads(pipe.read() or b'{"error": "no answer"}')
    _, _, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - started
    if "error" in answer:
        raise RuntimeError(answer["error"])
    if isinstance(answer["ok"], dict) and "inner_seconds" in answer["ok"]:
        seconds = answer["ok"]["inner_seconds"]  # the child timed its own measured part
    return answer["ok"], seconds, usage.ru_maxrss / 1024


def prepare(fn: Callable[[], Any]) -> Any:
    """Preparation done in a child too: the memory it leaves behind would be in the RSS of every child forked
    from this process afterwards (a fork starts with its parent's resident pages)."""
    return in_child(fn)[0]


def repeat(fn: Callable[[], Any], times: int, setup: Callable[[], None] | None = None) -> dict[str, Any]:
    """Time fn in a fresh child ``times`` times (setup runs in the parent before each)."""
    seconds, peaks, result = [], [], None
    for _ in range(times):
        if setup:
            setup()
        # Copying a data folder leaves hundreds of MB of dirty pages; without this, the first fsync
        # of the measured code (synchronous=FULL) would wait for the copy to reach the disk.
        os.sync()
        result, elapsed, peak = in_child(fn)
        seconds.append(elapsed)
        peaks.append(peak)
    return {"seconds": stats(seconds), "peak_mib": max(peaks), "result": result}


def cohort_folder(root: Path, students: int) -> None:
    """A data folder with a synthetic cohort imported (no returns yet)."""
    folder = init_folder(root, "undergrad", "2026届本科毕业生离校", 2026)
    folder.store.upsert_students(make_cohort(students).students, source="bench")
    folder.close()


def our_issue(root: Path) -> int:
    """`lixiao issue` of every office."""
    folder = open_folder(root)
    issued = issue_workbooks(folder, plan_each(folder, [], None))
    folder.close()
    return len(issued)


def returned_file(root: Path, rows: int, work: Path) -> tuple[Path, str]:
    """A utilities workbook of ``rows`` students, 90 % ticked, saved by LibreOffice when it is installed."""
    folder = open_folder(root)
    issue_workbooks(folder, plan_all(folder, ["utilities"], None))
    folder.close()
    source = sorted((root / "outbox" / "utilities").glob("*.xlsx"))[-1]
    data = tick_workbook(source, random.Random(rows), 0.9, "基准测试")
    saved = libreoffice_resave(data)
    target = work / f"returned-{rows}.xlsx"
    target.write_bytes(saved or data)
    return target, "LibreOffice" if saved else "openpyxl"


def p2(scratch: Path, returned: Path, size: int, repeats: int, fresh: Callable[[], None]) -> dict[str, Any]:
    """P2 both ways (bench/takeback.py), each on a fresh copy of the folder, with its bare side in the same run."""
    row = {f"P2_daemon_{size}": repeat(lambda: daemon_take_back(scratch, returned), repeats, fresh),
           f"P2_parsed_ahead_{size}": repeat(lambda: daemon_take_back(scratch, returned, parsed_ahead=True), repeats,
                                             fresh),
           f"P2_bare_in_process_{size}": repeat(lambda: bare_in_process(returned), repeats),
           f"P2_command_{size}": repeat(lambda: sync_command(scratch, returned, reports=False), repeats, fresh),
           f"P2_command_with_reports_{size}": repeat(lambda: sync_command(scratch, returned, reports=True), repeats,
                                                     fresh),
           f"P2_bare_command_{size}": repeat(lambda: bare_command(returned), repeats)}
    median = {key: value["seconds"]["median"] for key, value in row.items()}
    return {**row, f"P2_daemon_ratio_{size}": median[f"P2_daemon_{size}"] / median[f"P2_bare_in_process_{size}"],
            f"P2_parsed_ahead_ratio_{size}": (median[f"P2_parsed_ahead_{size}"]
                                              / median[f"P2_bare_in_process_{size}"]),
            f"P2_command_ratio_{size}": median[f"P2_command_{size}"] / median[f"P2_bare_command_{size}"],
            f"P2_command_with_reports_ratio_{size}": (median[f"P2_command_with_reports_{size}"]
                                                      / median[f"P2_bare_command_{size}"])}


def our_regen(root: Path) -> dict[str, float]:
    """Regenerating reports/ on an open data folder (what `lixiao watch` does after each batch): the
    seconds of render_report alone; opening the folder is not counted."""
    folder = open_folder(root)
    started = time.monotonic()
    render_report(folder.store, folder.flow, root / "reports")
    seconds = time.monotonic() - started
    folder.close()
    return {"inner_seconds": seconds}


def our_report_command(root: Path) -> int:
    """`lixiao report` as a user runs it: interpreter start, opening (with its integrity check), reports."""
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "report"],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stdout + done.stderr)
    return done.returncode


def bare_report(root: Path) -> dict[str, float]:
    """The same I/O with the bare libraries, timed like our_regen (the flow read beforehand): sqlite3
    reads every student and status row, XlsxWriter (constant_memory) writes the 学号 × step matrix."""
    steps = [s.code for s in load_flow_file(root / "flow.toml").all_steps()]
    labels = {"passed": "已通过", "failed": "未通过", "optional": "可办可不办", "pending": "未办理", "na": ""}
    started = time.monotonic()
    db = sqlite3.connect(root / "store.db")
    students = db.execute("SELECT student_no, name, college, class_name, dorm, previous FROM students "
                          "ORDER BY student_no").fetchall()
    stored: dict[str, dict[str, str]] = {}
    for no, step, status in db.execute("SELECT student_no, step, status FROM statuses"):
        stored.setdefault(no, {})[step] = status
    db.close()
    book = xlsxwriter.Workbook(io.BytesIO(), {"in_memory": True, "constant_memory": True})
    sheet = book.add_worksheet()
    for r, (no, name, college, class_name, dorm, previous) in enumerate(students, start=2):
        for c, value in enumerate((no, name, college, class_name, dorm, "是" if previous else "")):
            sheet.write_string(r, c, value)
        mine = stored.get(no, {})
        for c, step in enumerate(steps, start=6):
            sheet.write_string(r, c, labels[mine.get(step, "pending")])
    book.close()
    return {"inner_seconds": time.monotonic() - started}


def late_session(root: Path) -> None:
    """Every step of every student stored (90 % passed, the rest failed, optional or pending): the state
    of the last days, when reports are read most."""
    folder = open_folder(root)
    rng = random.Random(5)
    steps = [s.code for s in folder.flow.all_steps()]
    weights = [Status.PASSED] * 90 + [Status.FAILED] * 3 + [Status.OPTIONAL] * 2 + [Status.PENDING] * 5
    batch: list[tuple[str, str, Status, str, str]] = []
    for student in folder.store.students():
        batch += [(student.student_no, step, rng.choice(weights), "", "applied") for step in steps]
        if len(batch) > 20000:
            with folder.store.transaction():
                folder.store.write_statuses(batch, source="bench", operator="基准")
            batch = []
    with folder.store.transaction():
        folder.store.write_statuses(batch, source="bench", operator="基准")
    folder.close()


def watch_latency(root: Path, settle: float, drops: int) -> list[float]:
    """Seconds from a file landing in inbox/ to reports/index.html being rewritten, under `lixiao watch`."""
    folder = open_folder(root)
    issue_workbooks(folder, plan_all(folder, ["network"], None))
    folder.close()
    source = sorted((root / "outbox" / "network").glob("*.xlsx"))[-1]
    daemon = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "watch",
                               "--settle", str(settle)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies = []
    try:
        time.sleep(3)
        index = root / "reports" / "index.html"
        for number in range(drops):
            data = tick_workbook(source, random.Random(number), 0.2 + 0.1 * number, f"基准{number}")
            before = index.stat().st_mtime_ns if index.exists() else 0
            started = time.monotonic()
            (root / "inbox" / f"latency-{number}.xlsx").write_bytes(data)
            while (index.stat().st_mtime_ns if index.exists() else 0) == before:
                if time.monotonic() - started > 120:
                    raise RuntimeError("reports were not refreshed within 120 s")
                time.sleep(0.05)
            latencies.append(time.monotonic() - started)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    return latencies


def burst(root: Path, files: int, work: Path) -> dict[str, Any]:
    """``files`` returned workbooks dropped at once, then one `lixiao sync`: all processed, files per minute."""
    folder = open_folder(root)
    issue_workbooks(folder, plan_all(folder, ["college"], "class"))
    folder.close()
    sources = sorted((root / "outbox" / "college").glob("*.xlsx"))[:files]
    for number, source in enumerate(sources):
        (root / "inbox" / f"burst-{number:03d}.xlsx").write_bytes(
            tick_workbook(source, random.Random(number), 0.8, "基准"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "sync", "--json"],
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    outcomes = [f["outcome"] for f in json.loads(done.stdout)["files"]]
    return {"files": len(sources), "merged": outcomes.count("merged"), "seconds": seconds,
            "files_per_minute": 60 * len(sources) / seconds,
            "left_in_inbox": len([p for p in (root / "inbox").iterdir() if p.suffix == ".xlsx"])}


def main() -> int:
    """Run everything and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--students", type=int, action="append", help="cohort sizes instead of 8,500 and 30,000")
    parser.add_argument("--p2-rows", type=int, default=5000, help="rows of the smaller returned workbook")
    args = parser.parse_args()
    # measured as installed: with the bytecode of lixiao's modules current (see `make bytecode`)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / p) for p in PACKAGES)], check=True,
                   stdout=subprocess.DEVNULL)
    repeats = 2 if args.quick else 3
    cohorts = args.students or ([8500] if args.quick else [8500, 30000])
    results: dict[str, Any] = {"machine": os.uname().nodename, "cpus": os.cpu_count(),
                               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cohorts": {}}
    work = Path(tempfile.mkdtemp(prefix="lixiao-bench-"))
    try:
        for students in cohorts:
            print(f"== {students} students", flush=True)
            row: dict[str, Any] = {}
            base = work / f"cohort-{students}"
            prepare(lambda base=base, students=students: cohort_folder(base, students))
            row["P1_issue"] = repeat(lambda base=base: our_issue(base), repeats)
            row["P1_bare_xlsxwriter"] = repeat(lambda base=base: bare_issue(base), repeats)
            row["P1_ratio"] = row["P1_issue"]["seconds"]["median"] / row["P1_bare_xlsxwriter"]["seconds"]["median"]
            print(f"P1 {row['P1_ratio']:.2f}x", flush=True)
            sizes = [args.p2_rows, 30000] if students == 30000 else [args.p2_rows]
            for size in sizes:
                folder_for_size = base if size == students else work / f"p2-{size}"
                if not folder_for_size.exists():
                    prepare(lambda folder=folder_for_size, size=size: cohort_folder(folder, size))
                name, saved_by = prepare(lambda folder=folder_for_size, size=size: list(map(str, returned_file(
                    folder, size, work))))
                returned = Path(name)
                template = work / f"p2-template-{size}"
                shutil.rmtree(template, ignore_errors=True)
                shutil.copytree(folder_for_size, template)
                scratch = work / f"p2-scratch-{size}"

                def fresh(template: Path = template, scratch: Path = scratch) -> None:
                    shutil.rmtree(scratch, ignore_errors=True)
                    shutil.copytree(template, scratch)

                row.update(p2(scratch, returned, size, repeats, fresh))
                row[f"P2_daemon_{size}"]["saved_by"] = saved_by
                print(f"P2 {size}: daemon {row[f'P2_daemon_ratio_{size}']:.1f}x "
                      f"(parsed ahead {row[f'P2_parsed_ahead_ratio_{size}']:.1f}x), command "
                      f"{row[f'P2_command_ratio_{size}']:.1f}x ({saved_by})", flush=True)
            # P4 on the state P2 left (a merged return) — copy it so the cohort stays clean for P3/P5.
            p4 = work / f"p4-{students}"
            shutil.copytree(work / f"p2-scratch-{students if students in sizes else args.p2_rows}", p4)
            row["P4_report"] = repeat(lambda p4=p4: our_regen(p4), repeats)
            print(f"P4 {row['P4_report']['seconds']['median']:.2f}s", flush=True)
            late = work / f"p4-late-{students}"
            shutil.copytree(p4, late)
            prepare(lambda late=late: late_session(late))
            row["P4_report_late"] = repeat(lambda late=late: our_regen(late), repeats)
            row["P4_bare_report_late"] = repeat(lambda late=late: bare_report(late), repeats)
            row["P4_ratio_late"] = (row["P4_report_late"]["seconds"]["median"]
                                    / row["P4_bare_report_late"]["seconds"]["median"])
            row["P4_report_command_late"] = repeat(lambda late=late: our_report_command(late), repeats)
            print(f"P4 late {row['P4_report_late']['seconds']['median']:.2f}s "
                  f"({row['P4_ratio_late']:.2f}x bare), command "
                  f"{row['P4_report_command_late']['seconds']['median']:.2f}s", flush=True)
            row.update(interactive(late, repeats * 2))
            row.update(verify(late, repeats))
            print(f"P7 status {row['P7_status']['seconds']['median']:.2f}s, --help "
                  f"{row['P7_help']['seconds']['median']:.2f}s; P8 verify {row['P8_verify']['seconds']['median']:.2f}s "
                  f"({row['P8_ratio']:.1f}x bare)", flush=True)
            shutil.rmtree(late)
            if students == cohorts[0]:
                settle = 1.0
                latencies = watch_latency(work / f"p4-{students}", settle, 3)
                row["P3_watch_latency"] = {"seconds": stats(latencies), "settle": settle}
                print(f"P3 {statistics.median(latencies):.2f}s", flush=True)
                p5 = work / f"p5-{students}"
                shutil.copytree(base, p5)
                row["P5_burst"] = burst(p5, 100, work)
                print(f"P5 {row['P5_burst']['files_per_minute']:.0f} files/min", flush=True)
            results["cohorts"][str(students)] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), "utf-8")
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    """The Markdown table docs/performance.md holds."""
    print("\n| cohort | measure | min | median | max | ratio / rate | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for students, row in results["cohorts"].items():
        for key, value in row.items():
            if not isinstance(value, dict) or "seconds" not in value:
                continue
            s = value["seconds"]
            if isinstance(s, dict):
                ratio = ""
                if key == "P1_issue":
                    ratio = f"{row['P1_ratio']:.2f}× bare XlsxWriter"
                elif key.startswith("P2_daemon_"):
                    size = key.rsplit("_", 1)[1]
                    ratio = f"{row[f'P2_daemon_ratio_{size}']:.1f}× bare calamine in process ({value['saved_by']})"
                elif key.startswith("P2_parsed_ahead_"):
                    size = key.rsplit("_", 1)[1]
                    ratio = f"{row[f'P2_parsed_ahead_ratio_{size}']:.1f}× bare calamine in process (parsed ahead)"
                elif key.startswith("P2_command_"):
                    size = key.rsplit("_", 1)[1]
                    kind = key[len("P2_"):-len(size) - 1]
                    ratio = f"{row[f'P2_{kind}_ratio_{size}']:.1f}× a bare calamine process"
                elif key == "P4_report_late":
                    ratio = f"{row['P4_ratio_late']:.2f}× bare sqlite3 + XlsxWriter"
                elif key == "P8_verify":
                    ratio = f"{row['P8_ratio']:.1f}× bare chain read + quick_check"
                elif key.startswith("P7_") and key != "P7_bare_sqlite3_lookup":
                    bare = row["P7_bare_sqlite3_lookup"]["seconds"]["median"]
                    ratio = f"{s['median'] / bare:.1f}× a bare sqlite3 lookup process"
                elif key == "P3_watch_latency":
                    ratio = f"settle {value['settle']} s"
                peak = f"{value['peak_mib']:.0f}" if "peak_mib" in value else ""  # whole-process ones: not measured
                print(f"| {students} | {key} | {s['min']:.2f} | {s['median']:.2f} | {s['max']:.2f} | {ratio} | "
                      f"{peak} |")
        if "P5_burst" in row:
            b = row["P5_burst"]
            print(f"| {students} | P5_burst ({b['files']} files) | | {b['seconds']:.1f} | | "
                  f"{b['files_per_minute']:.0f} files/min, {b['merged']} merged, {b['left_in_inbox']} left | |")


if __name__ == "__main__":
    raise SystemExit(main())
