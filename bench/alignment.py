"""Row alignment measured: false refusals on whole-row sorts (must be 0), and what partial sorts are caught.

    .venv/bin/python -m bench.alignment [--students 400] [--runs 200] [--libreoffice 30]

Each run ticks random cells of the utilities workbook, then sorts it (openpyxl, the way a spreadsheet
does): whole rows by a random column, or a random block of columns only. The merge plan is computed as
the pipeline does (row keys on); a whole-row sort must give no misaligned row, and the ticks applied must
be exactly those made. A partial sort (a block of columns holding 学号, 行校验, or a column whose values
tell the rows apart) is "caught" when it applies no tick to a student who was not ticked for (its rows
refused, or the file refused past max_misaligned_rows).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import openpyxl
from click.testing import CliRunner

from lixiao.core.clearance.issuance import Baseline
from lixiao.core.clearance.merge import MergeInput, plan_merge
from lixiao.core.feeds.synthetic import make_cohort
from lixiao.core.storage.signing import row_key, row_secret
from lixiao.sync.cli.main import main as cli
from lixiao.sync.datafolder import open_folder
from lixiao.sync.demo.officesim import sort_columns
from lixiao.workbooks.layout import HEADER_ROW, MAIN_SHEET, ROW_KEY_HEADER
from lixiao.workbooks.reader import read_returned
from lixiao.workbooks.roster import build_roster, roster_row


def _folder(root: Path, students: int) -> Path:
    runner = CliRunner()
    runner.invoke(cli, ["init", str(root), "--session", "2026届本科毕业生离校"], catch_exceptions=False)
    roster = root.parent / "roster.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in make_cohort(students).students]))
    runner.invoke(cli, ["--data", str(root), "students", "import", str(roster)], catch_exceptions=False)
    runner.invoke(cli, ["--data", str(root), "issue", "--checkpoint", "utilities"], catch_exceptions=False)
    return root


def run(students: int, runs: int, seed: int) -> dict[str, Any]:
    """Measure ``runs`` whole-row sorts and ``runs`` partial ones; return the counts."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="lixiao-align-") as work:
        root = _folder(Path(work) / "data", students)
        source = next((root / "outbox" / "utilities").glob("*.xlsx"))
        key = bytes.fromhex((root / ".secret").read_text())
        folder = open_folder(root, write=False)
        students_by_no = {s.student_no: s for s in folder.store.students()}
        stored = folder.store.all_status_rows()
        counts = {"whole_runs": 0, "whole_false_rows": 0, "whole_false_columns": 0, "whole_wrong_result": 0,
                  "partial_runs": 0, "partial_caught": 0, "partial_file_refused": 0}
        for kind in ("whole", "partial"):
            for _ in range(runs):
                book = openpyxl.load_workbook(source)
                ws = book[MAIN_SHEET]
                head = {ws.cell(HEADER_ROW + 1, c).value: c for c in range(1, ws.max_column + 1)}
                step_cols = [c for t, c in head.items() if t == "清理电费"]
                intended = set()
                for r in range(HEADER_ROW + 2, ws.max_row + 1):
                    for c in step_cols:
                        if ws.cell(r, c).value is False and rng.random() < 0.3:
                            ws.cell(r, c).value = True
                            intended.add(ws.cell(r, 1).value)
                width = ws.max_column
                if kind == "whole":
                    sort_columns(ws, 1, width, rng.randint(1, width), rng.random() < 0.5)
                else:
                    def distinct(col: int, ws: Any = ws) -> bool:
                        values = [ws.cell(r, col).value for r in range(HEADER_ROW + 2, ws.max_row + 1)]
                        return len(set(values)) == len(values)

                    binding = [head["学号"], head[ROW_KEY_HEADER],
                               *(head[t] for t in ("姓名", "身份证号") if distinct(head[t]))]
                    anchor = rng.choice(binding)
                    first, last = rng.randint(1, anchor), rng.randint(anchor, width)
                    if (first, last) == (1, width):
                        first = 2
                    sort_columns(ws, first, last, rng.randint(first, last), rng.random() < 0.5)
                buffer = io.BytesIO()
                book.save(buffer)
                returned = read_returned(buffer.getvalue(), key)
                plan = _plan(folder, key, returned, students_by_no, stored)
                applied = {c.student_no for c in plan.changes}
                counts[f"{kind}_runs"] += 1
                if kind == "whole":
                    counts["whole_false_rows"] += len(plan.misaligned)
                    counts["whole_false_columns"] += sum("错开" in r.reason for r in plan.refusals)
                    refused = {r.student_no for r in plan.refusals}  # e.g. a prerequisite missing
                    counts["whole_wrong_result"] += bool(applied - intended or intended - applied - refused)
                else:
                    refused_file = len(plan.misaligned) > 3
                    counts["partial_file_refused"] += refused_file
                    counts["partial_caught"] += refused_file or applied <= intended
        folder.close()
    return counts


def _plan(folder: Any, key: bytes, returned: Any, students: dict[str, Any], stored: Any) -> Any:
    """The merge plan of a returned utilities workbook, built as the pipeline builds it (row keys, the columns a
    tick below the students marks as shifted)."""
    workbook = folder.store.workbook((returned.token.payload or {})["workbook_id"])
    assert workbook is not None
    secret = row_secret(key, workbook.id)
    shifted = {(MAIN_SHEET, a.step) for a in returned.anomalies if a.code == "tick_outside_rows"}
    return plan_merge(folder.flow, folder.year, "utilities", Baseline.from_text(workbook.baseline),
                      MergeInput(returned.rows, returned.batch, returned.duplicates, returned.waivers,
                                 returned.batch_rows, shifted),
                      students, stored, {}, lambda ident: row_key(secret, ident))


def run_libreoffice(students: int, runs: int, seed: int) -> dict[str, Any]:
    """``runs`` whole-row sorts done by a real LibreOffice (UNO, tests/realclients/lo_edit.py) with ticks made in
    it too; count rows the merge would refuse as out of line (must be 0) and wrong results."""
    import subprocess

    rng = random.Random(seed)
    editor = Path(__file__).resolve().parents[1] / "tests" / "realclients" / "lo_edit.py"
    with tempfile.TemporaryDirectory(prefix="lixiao-align-lo-") as work:
        root = _folder(Path(work) / "data", students)
        source = next((root / "outbox" / "utilities").glob("*.xlsx"))
        key = bytes.fromhex((root / ".secret").read_text())
        folder = open_folder(root, write=False)
        issued = read_returned(source.read_bytes(), key)
        numbers = sorted(issued.rows)
        headers = ["学号", "姓名", "性别", "院系", "专业", "班级", "宿舍", "前置条件", "清理电费", "备注",
                   ROW_KEY_HEADER]
        jobs, intended = [], []
        for index in range(runs):
            chosen = rng.sample(numbers, 5)
            intended.append(set(chosen))
            jobs.append({"input": str(source), "output": f"{work}/out{index}.xlsx", "operator": "测试",
                         "edits": [{"sheet": MAIN_SHEET, "key": no, "column": "清理电费", "value": True}
                                   for no in chosen],
                         "sort": {"sheet": MAIN_SHEET, "by": rng.choice(headers), "ascending": rng.random() < 0.5}})
        spec = Path(work) / "jobs.json"
        spec.write_text(json.dumps(jobs, ensure_ascii=False), "utf-8")
        subprocess.run(["/usr/bin/python3", str(editor), str(spec)], check=True, timeout=60 + 20 * runs)
        counts = {"lo_runs": runs, "lo_false_rows": 0, "lo_false_columns": 0, "lo_wrong_result": 0}
        for job, want in zip(jobs, intended, strict=True):
            returned = read_returned(Path(job["output"]).read_bytes(), key)
            plan = _plan(folder, key, returned, {s.student_no: s for s in folder.store.students()},
                         folder.store.all_status_rows())
            counts["lo_false_rows"] += len(plan.misaligned)
            counts["lo_false_columns"] += sum("错开" in r.reason for r in plan.refusals)
            counts["lo_wrong_result"] += {c.student_no for c in plan.changes} != want
        folder.close()
    return counts


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--libreoffice", type=int, default=0, metavar="N",
                        help="also N whole-row sorts done in a real LibreOffice")
    args = parser.parse_args()
    result = run(args.students, args.runs, args.seed)
    if args.libreoffice:
        result |= run_libreoffice(args.students, args.libreoffice, args.seed)
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
