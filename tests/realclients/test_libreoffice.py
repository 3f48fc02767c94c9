"""Workbooks opened, ticked, sorted and saved by a real LibreOffice are read back to exactly the ticks made."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lixiao.core.manual.flow import load_preset
from lixiao.core.manual.model import Status
from lixiao.sync.cli.main import main
from lixiao.workbooks.reader import read_returned
from lixiao.workbooks.returned import Returned

from ..conftest import cohort_folder
from .conftest import SYSTEM_PYTHON

pytestmark = pytest.mark.slow
EDITOR = Path(__file__).with_name("lo_edit.py")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-student folder with every workbook issued; one student's electricity already passed."""
    folder = cohort_folder(tmp_path_factory.mktemp("lo") / "demo", 400)
    runner = CliRunner()
    assert runner.invoke(main, ["--data", str(folder), "set", "2201010101", "electricity", "passed"]).exit_code == 0
    result = runner.invoke(main, ["--data", str(folder), "issue"])
    assert result.exit_code == 0, result.output
    return folder


def key(folder: Path) -> bytes:
    """The folder's signing key."""
    return bytes.fromhex((folder / ".secret").read_text())


def run_jobs(jobs: list[dict[str, Any]], tmp_path: Path) -> None:
    """Run lo_edit.py on the jobs in one LibreOffice session."""
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs, ensure_ascii=False), "utf-8")
    done = subprocess.run([SYSTEM_PYTHON, str(EDITOR), str(spec)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ), check=False)
    assert done.returncode == 0, done.stderr + done.stdout


def ticked(returned: Returned) -> dict[str, dict[str, Status]]:
    """Only the ticked cells of a returned workbook, by 学号."""
    return {no: {k: v for k, v in row.marks.items() if v is Status.PASSED} for no, row in returned.rows.items()
            if any(m is Status.PASSED for m in row.marks.values())}


def test_headless_convert_keeps_ticks_and_token(libreoffice: str, demo: Path, tmp_path: Path) -> None:
    """`soffice --convert-to xlsx` (LibreOffice's own save) changes no tick and keeps the signature valid."""
    source = next((demo / "outbox" / "utilities").glob("*.xlsx"))
    before = read_returned(source.read_bytes(), key(demo))
    work = tmp_path / "convert"
    work.mkdir()
    (work / "in.xlsx").write_bytes(source.read_bytes())
    subprocess.run([libreoffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/profile",
                    "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(work / "out"),
                    str(work / "in.xlsx")], check=True, capture_output=True, timeout=180, env=dict(os.environ))
    after_bytes = (work / "out" / "in.xlsx").read_bytes()
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(after_bytes)) as archive:  # LibreOffice rewrote booleans as formulas
        assert b"TRUE()</f>" in archive.read("xl/worksheets/sheet1.xml")
    after = read_returned(after_bytes, key(demo))
    assert after.token.status == "valid" and after.students_match is True
    assert ticked(after) == ticked(before) == {"2201010101": {"electricity": Status.PASSED}}
    assert {no: r.marks for no, r in after.rows.items()} == {no: r.marks for no, r in before.rows.items()}
    assert after.anomalies == []


def test_staff_edit_in_libreoffice_reads_back_exactly(libreoffice: str, demo: Path, tmp_path: Path) -> None:
    """Ticks, a typed √, an untick, a batch room tick, a sort by 宿舍 and the 经办人 all survive a LibreOffice save."""
    utilities = next((demo / "outbox" / "utilities").glob("*.xlsx"))
    issued = read_returned(utilities.read_bytes(), key(demo))
    with_dorm = sorted(no for no, r in issued.rows.items() if r.identity["宿舍"] != "无住宿信息")
    a, b, c = with_dorm[1], with_dorm[2], with_dorm[3]
    room = next(t.group for t in issued.batch if t.mode == "dorm")
    college = next(p for p in (demo / "outbox" / "college").glob("*.xlsx") if "能源与安全工程学院" in p.name)
    college_issued = read_returned(college.read_bytes(), key(demo))
    klass = next(t.group for t in college_issued.batch if t.mode == "class")
    student = sorted(college_issued.rows)[5]
    out_u, out_c = tmp_path / "u.xlsx", tmp_path / "c.xlsx"
    run_jobs([
        {"input": str(utilities), "output": str(out_u), "operator": "水电王老师",
         "edits": [
             {"sheet": "办理", "key": a, "column": "清理电费", "value": True},
             {"sheet": "办理", "key": b, "column": "清理电费", "value": True},
             {"sheet": "办理", "key": c, "column": "清理电费", "value": "√"},
             {"sheet": "办理", "key": "2201010101", "column": "清理电费", "value": False},
             {"sheet": "按宿舍", "key": room, "column": "清理电费", "value": True}],
         "sort": {"sheet": "办理", "by": "宿舍", "ascending": False}},
        {"input": str(college), "output": str(out_c), "operator": "学院李老师",
         "edits": [
             {"sheet": "办理", "key": student, "column": "转出党团组织关系", "value": True},
             {"sheet": "按班级", "key": klass, "column": "归还教学仪器", "value": True}],
         "sort": {"sheet": "办理", "by": "姓名"}},
    ], tmp_path)

    back = read_returned(out_u.read_bytes(), key(demo))
    assert back.token.status == "valid" and back.students_match is True and back.anomalies == []
    assert back.operator == "水电王老师"
    assert ticked(back) == {a: {"electricity": Status.PASSED}, b: {"electricity": Status.PASSED},
                            c: {"electricity": Status.PASSED}}
    assert back.rows["2201010101"].marks == {"electricity": Status.PENDING}  # the revocation
    assert [(t.group, t.step) for t in back.batch if t.ticked] == [(room, "electricity")]
    order = [r.identity["宿舍"] for r in sorted(back.rows.values(), key=lambda r: r.row)]
    assert order == sorted(order, reverse=True)  # really sorted, rows still keyed by 学号

    college_back = read_returned(out_c.read_bytes(), key(demo))
    assert college_back.token.status == "valid" and college_back.anomalies == []
    assert college_back.operator == "学院李老师"
    # national-loan cells were issued ticked (the loans feed passed them); the only new tick is ours
    expected = ticked(college_issued)
    expected.setdefault(student, {})["party_transfer"] = Status.PASSED
    assert ticked(college_back) == expected
    issued_batch = {(t.mode, t.group, t.step) for t in college_issued.batch if t.ticked}
    back_batch = {(t.mode, t.group, t.step) for t in college_back.batch if t.ticked}
    assert back_batch - issued_batch == {("class", klass, "return_instruments")}
    assert issued_batch <= back_batch


def test_libreoffice_return_syncs_to_exactly_the_ticks_made(libreoffice: str, tmp_path: Path) -> None:
    """Ticked, typed (未通过 with its reason in 备注, × without one), sorted and saved in LibreOffice, then synced:
    the store holds exactly those statuses, and the receipt lists the refused prerequisite tick in the manual's
    words and asks for the missing reason."""
    import openpyxl

    folder = cohort_folder(tmp_path / "demo", 120)
    runner = CliRunner()
    assert runner.invoke(main, ["--data", str(folder), "issue", "--checkpoint", "utilities",
                                "--checkpoint", "certificates"]).exit_code == 0
    utilities = next((folder / "outbox" / "utilities").glob("*.xlsx"))
    certificates = sorted((folder / "outbox" / "certificates").glob("*.xlsx"))[0]
    issued = read_returned(utilities.read_bytes(), key(folder))
    chosen = sorted(issued.rows)[:3]
    failed, crossed = sorted(issued.rows)[3:5]
    cert_student = sorted(read_returned(certificates.read_bytes(), key(folder)).rows)[0]
    out_u, out_c = tmp_path / "u.xlsx", tmp_path / "c.xlsx"
    run_jobs([
        {"input": str(utilities), "output": str(out_u), "operator": "水电王老师",
         "edits": [*({"sheet": "办理", "key": no, "column": "清理电费", "value": True} for no in chosen),
                   {"sheet": "办理", "key": failed, "column": "清理电费", "value": "未通过"},
                   {"sheet": "办理", "key": failed, "column": "备注", "value": "电费欠 35 元"},
                   {"sheet": "办理", "key": crossed, "column": "清理电费", "value": "×"}],
         "sort": {"sheet": "办理", "by": "宿舍"}},
        {"input": str(certificates), "output": str(out_c), "operator": "学院李老师",
         "edits": [{"sheet": "办理", "key": cert_student, "column": "领取学位证", "value": True}]},
    ], tmp_path)
    (folder / "inbox" / "水电.xlsx").write_bytes(out_u.read_bytes())
    (folder / "inbox" / "证件.xlsx").write_bytes(out_c.read_bytes())
    result = runner.invoke(main, ["--data", str(folder), "sync", str(folder / "inbox" / "水电.xlsx"),
                                  str(folder / "inbox" / "证件.xlsx"), "--json"])
    outcomes = {f["file"]: f for f in json.loads(result.output)["files"]}
    assert outcomes["水电.xlsx"]["outcome"] == "merged" and outcomes["水电.xlsx"]["applied"] == 5
    assert any("没有写原因" in r and crossed in r for r in outcomes["水电.xlsx"]["reasons"])
    for no, remark in ((failed, "电费欠 35 元"), (crossed, "")):
        record = json.loads(runner.invoke(main, ["--data", str(folder), "status", no, "--json"]).output)
        electricity = next(s for s in record["steps"] if s["step"] == "electricity")
        assert (electricity["status"], electricity["remark"]) == ("failed", remark)
    assert outcomes["证件.xlsx"]["refused"] == 1 and outcomes["证件.xlsx"]["applied"] == 0
    for no in chosen:
        record = json.loads(runner.invoke(main, ["--data", str(folder), "status", no, "--json"]).output)
        electricity = next(s for s in record["steps"] if s["step"] == "electricity")
        assert electricity["status"] == "passed"
    history = json.loads(runner.invoke(main, ["--data", str(folder), "history", chosen[0], "--json"]).output)
    assert history[-1]["operator"] == "水电王老师"
    receipt = openpyxl.load_workbook(folder / outcomes["证件.xlsx"]["receipt"])
    summary = {r[0].value: r[1].value for r in receipt["概要"].iter_rows()}
    assert summary["保存软件"].startswith("LibreOffice ")  # the program that saved it, from its app.xml
    reason = receipt["被拒绝"]["E2"].value
    assert reason.startswith("当前学生没有完成以下步骤，不能进行当前离校点的离校：")
    assert "财务处离校点：缴还欠款" in reason or "学生工作处离校点：归还学生证" in reason


def test_libreoffice_sort_of_id_and_name_only_is_refused_and_whole_rows_are_not(libreoffice: str,
                                                                                 tmp_path: Path) -> None:
    """In a real LibreOffice: tick five rows, then select 学号:姓名 only and sort by 姓名 (the issue's case) — the
    return is refused whole and the store is unchanged; the same ticks with a whole-row sort merge exactly."""
    folder = cohort_folder(tmp_path / "demo", 80)
    runner = CliRunner()
    assert runner.invoke(main, ["--data", str(folder), "issue", "--checkpoint", "utilities"]).exit_code == 0
    utilities = next((folder / "outbox" / "utilities").glob("*.xlsx"))
    chosen = sorted(read_returned(utilities.read_bytes(), key(folder)).rows)[::16][:5]
    edits = [{"sheet": "办理", "key": no, "column": "清理电费", "value": True} for no in chosen]
    partial, whole = tmp_path / "partial.xlsx", tmp_path / "whole.xlsx"
    run_jobs([
        {"input": str(utilities), "output": str(partial), "operator": "水电王老师", "edits": edits,
         "sort": {"sheet": "办理", "by": "姓名", "columns": ["学号", "姓名"]}},
        {"input": str(utilities), "output": str(whole), "operator": "水电王老师", "edits": edits,
         "sort": {"sheet": "办理", "by": "姓名"}},
    ], tmp_path)
    moved = read_returned(partial.read_bytes(), key(folder))
    assert sum(r.identity["姓名"] != "" for r in moved.rows.values()) == 80  # really sorted, names moved
    (folder / "inbox" / "partial.xlsx").write_bytes(partial.read_bytes())
    result = runner.invoke(main, ["--data", str(folder), "sync", str(folder / "inbox" / "partial.xlsx"), "--json"])
    [item] = json.loads(result.output)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("misaligned：")
    assert not list((folder / "archive").glob("*.xlsx"))  # nothing merged
    (folder / "inbox" / "whole.xlsx").write_bytes(whole.read_bytes())
    result = runner.invoke(main, ["--data", str(folder), "sync", str(folder / "inbox" / "whole.xlsx"), "--json"])
    [item] = json.loads(result.output)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 5, 0)
    runner.invoke(main, ["--data", str(folder), "export", str(tmp_path / "m.json")])
    passed = {e["student_no"] for e in json.loads((tmp_path / "m.json").read_text("utf-8"))
              if e["step"] == "electricity" and e["status"] == "passed"}
    assert passed == set(chosen)


def test_libreoffice_reads_the_excel_report_matrix_cell_for_cell(libreoffice: str, demo: Path,
                                                                 tmp_path: Path) -> None:
    """The status matrix rows spliced into 离校进度.xlsx (not written by XlsxWriter) load in LibreOffice
    with every cell where openpyxl sees it, and the other sheets survive."""
    import openpyxl

    result = CliRunner().invoke(main, ["--data", str(demo), "report"])
    assert result.exit_code == 0, result.output
    work = tmp_path / "report"
    work.mkdir()
    (work / "in.xlsx").write_bytes((demo / "reports" / "离校进度.xlsx").read_bytes())
    subprocess.run([libreoffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/profile",
                    "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(work / "out"),
                    str(work / "in.xlsx")], check=True, capture_output=True, timeout=180, env=dict(os.environ))
    ours = openpyxl.load_workbook(work / "in.xlsx", read_only=True)
    theirs = openpyxl.load_workbook(work / "out" / "in.xlsx", read_only=True)
    assert theirs.sheetnames == ours.sheetnames
    mine = [list(r) for r in ours["状态矩阵"].iter_rows(values_only=True)]
    saved = [list(r) for r in theirs["状态矩阵"].iter_rows(values_only=True)]
    assert len(mine) == 2 + 400 and saved[:len(mine)] == mine
    header = mine[1]
    passed_row = next(r for r in mine if r[0] == "2201010101")
    assert passed_row[header.index(load_preset("undergrad").steps["electricity"].name)] == "已通过"


def test_libreoffice_keeps_the_ready_list_first_and_the_return_merges(libreoffice: str, tmp_path: Path) -> None:
    """A certificate workbook ticked and saved in LibreOffice keeps 可领证名单 as its first sheet, unchanged, and
    its tick for a listed student merges."""
    import openpyxl

    from lixiao.core.manual import rules
    from lixiao.core.storage.store import Store
    from lixiao.workbooks.layout import READY_SHEET

    folder = cohort_folder(tmp_path / "demo", 40)
    runner = CliRunner()
    flow = load_preset("undergrad")
    student = Store.open(folder / "store.db").students()[0]
    for step in rules.prerequisite_steps(flow, flow.checkpoint("certificates")):
        if step.enabled(2026) and rules.applies(step, student):
            result = runner.invoke(main, ["--data", str(folder), "set", student.student_no, step.code, "passed"])
            assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["--data", str(folder), "issue", "--checkpoint", "certificates"]).exit_code == 0
    source = next(p for p in (folder / "outbox" / "certificates").glob("*.xlsx") if student.college in p.name)
    listed = [list(r) for r in openpyxl.load_workbook(source)[READY_SHEET].iter_rows(values_only=True)]
    assert [student.student_no, student.name, student.class_name,
            "领取学位证、领取毕业/结业证、领取报到证、领取户口迁移证明"] in listed
    out = tmp_path / "c.xlsx"
    run_jobs([{"input": str(source), "output": str(out), "operator": "学院李老师",
               "edits": [{"sheet": "办理", "key": student.student_no, "column": "领取报到证", "value": True}]}],
             tmp_path)
    saved = openpyxl.load_workbook(out)
    assert saved.sheetnames[0] == READY_SHEET
    assert [list(r) for r in saved[READY_SHEET].iter_rows(values_only=True)][:len(listed)] == listed
    back = read_returned(out.read_bytes(), key(folder))
    assert back.token.status == "valid" and back.students_match is True and back.anomalies == []
    (folder / "inbox" / "证件.xlsx").write_bytes(out.read_bytes())
    result = runner.invoke(main, ["--data", str(folder), "sync", str(folder / "inbox" / "证件.xlsx"), "--json"])
    [item] = json.loads(result.output)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 1, 0)
