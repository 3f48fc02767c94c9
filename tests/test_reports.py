"""Reports: figures equal hand-computed values, everything escaped and masked, files written atomically."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from lixiao.core.manual.flow import load_preset
from lixiao.core.storage.store import Store
from lixiao.reports.data import collect

from .conftest import ROSTER, Cli

EVERYTHING_FOR_PLAIN = ["party_transfer", "return_instruments", "return_books", "return_student_card",
                        "electricity", "dorm_items", "pay_arrears", "degree_certificate", "diploma",
                        "report_card", "hukou_letter"]


@pytest.fixture
def reported(cli: Cli, pass_all: Callable[[str, list[str]], None]) -> Cli:
    """丁德卫 complete, 雷宇 (往届) with electricity passed, utilities issued and never returned, report built."""
    pass_all("0803010103", EVERYTHING_FOR_PLAIN)
    pass_all("0701020201", ["electricity"])
    assert cli("issue", "--checkpoint", "utilities").exit_code == 0
    result = cli("report")
    assert result.exit_code == 0, result.output
    return cli


def test_figures_match_hand_computed_values(reported: Cli) -> None:
    """School, checkpoint (with 往届), step and college figures of the five-student fixture."""
    store = Store.open(reported.data / "store.db")
    data = collect(store, load_preset("undergrad"))
    assert (data.school.expected, data.school.expected_previous, data.school.unfinished) == (5, 1, 4)
    checkpoints = {cp.code: (cp, {s.code: s for s in steps}) for cp, steps in data.checkpoints}
    utilities, _ = checkpoints["utilities"]
    assert (utilities.expected, utilities.expected_previous, utilities.unfinished, utilities.unfinished_previous) \
        == (5, 1, 3, 0)
    network, _ = checkpoints["network"]  # an office nobody returned: only the switch borrower concerns it
    assert (network.expected, network.unfinished) == (1, 1)
    registrar, _ = checkpoints["registrar"]
    assert (registrar.expected, registrar.unfinished) == (1, 1)
    _, college_steps = checkpoints["college"]
    assert (college_steps["national_loan"].expected, college_steps["national_loan"].unfinished) == (1, 1)
    assert college_steps["party_transfer"].unfinished == 4
    colleges = {c.name: (c.expected, c.complete) for c in data.colleges}
    assert colleges == {"机电工程学院": (3, 1), "能源与安全工程学院": (2, 0)}
    office = next(o for o in data.offices if o.checkpoint == "utilities")
    assert office.returned_at is None and office.generation == 1
    bottleneck = {code: total for code, _, _, total in data.bottlenecks}
    assert bottleneck["party_transfer"] == 4 and bottleneck["electricity"] == 3


def test_each_college_gets_its_own_checkpoint_and_step_figures(reported: Cli) -> None:
    """The per-college 实时统计 counts only that college's students (and their 往届) and adds up to the school's;
    college-N.html and the Excel report show it."""
    store = Store.open(reported.data / "store.db")
    data = collect(store, load_preset("undergrad"))
    per = {name: {cp.code: cp for cp, _ in figures} for name, figures in data.college_checkpoints.items()}
    assert (per["机电工程学院"]["utilities"].expected, per["机电工程学院"]["utilities"].unfinished) == (3, 2)
    energy = per["能源与安全工程学院"]["utilities"]
    assert (energy.expected, energy.expected_previous, energy.unfinished) == (2, 1, 1)
    for code, (school_cp, _) in {cp.code: (cp, s) for cp, s in data.checkpoints}.items():
        assert sum(per[c][code].unfinished for c in per) == school_cp.unfinished
    page = next(p for p in (reported.data / "reports").glob("college-*.html")
                if "机电工程学院" in p.read_text("utf-8")).read_text("utf-8")
    assert "实时统计（本学院" in page and "水电通信中心离校点" in page
    book = openpyxl.load_workbook(reported.data / "reports" / "离校进度.xlsx", read_only=True)
    rows = list(book["各学院实时统计"].iter_rows(values_only=True))
    assert ("能源与安全工程学院", "水电通信中心离校点", 2, 1, 1) in [r[:5] for r in rows]


def test_html_shows_the_store_figures(reported: Cli) -> None:
    """index.html carries the same header figures and links every college page and the Excel report."""
    html = (reported.data / "reports" / "index.html").read_text("utf-8")
    assert re.search(r'id="expected">5<', html) and re.search(r'id="unfinished">4<', html)
    assert re.search(r'id="complete">1<', html)
    assert (reported.data / "reports" / "college-1.html").exists()
    assert (reported.data / "reports" / "static" / "echarts.min.js").stat().st_size > 500_000
    assert "https://" not in html and "http://" not in html  # offline: no CDN


def test_ids_are_masked_everywhere(reported: Cli) -> None:
    """No full 身份证号 appears in any report file, HTML, JS or Excel."""
    for path in (reported.data / "reports").rglob("*"):
        if not path.is_file() or (path.suffix == ".js" and path.parent.name == "static"):
            continue
        data = path.read_bytes()
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                data = b"".join(archive.read(n) for n in archive.namelist())
        for student in ROSTER:
            assert student.id_card.encode() not in data, path
    students_js = (reported.data / "reports" / "students.js").read_text("utf-8")
    assert ROSTER[0].id_card[:6] + "********" + ROSTER[0].id_card[-4:] in students_js


def test_names_and_reasons_are_inert(cli: Cli, tmp_path: Path) -> None:
    """<script>, {{7*7}} and =1+1 in names and waiver reasons render as text, never markup or formulas."""
    from lixiao.workbooks.roster import build_roster, roster_row

    from .conftest import make_student

    nasty = [make_student("090000001", name="<script>alert(1)</script>"),
             make_student("090000002", name="{{7*7}}"), make_student("090000003", name="=1+1")]
    roster = tmp_path / "nasty.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in nasty]))
    assert cli("students", "import", str(roster)).exit_code == 0
    cli("waive", "090000001", "pay_arrears", "--reason", "<img src=x onerror=alert(1)>")
    assert cli("report").exit_code == 0
    html = (cli.data / "reports" / "index.html").read_text("utf-8")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    js = (cli.data / "reports" / "students.js").read_text("utf-8")
    assert "<script>" not in js and "{{7*7}}" in js
    book = openpyxl.load_workbook(cli.data / "reports" / "离校进度.xlsx")
    values = [c.value for row in book["状态矩阵"].iter_rows() for c in row]
    assert "=1+1" in values  # a string cell: openpyxl would show a formula as data_type "f"
    formula_cells = [c for row in book["状态矩阵"].iter_rows() for c in row if c.data_type == "f"]
    assert formula_cells == []


def test_excel_report_has_views_and_charts(reported: Cli) -> None:
    """离校进度.xlsx has a sheet per view, native charts and the full status matrix."""
    path = reported.data / "reports" / "离校进度.xlsx"
    book = openpyxl.load_workbook(path)
    assert {"实时统计", "各学院", "各班级", "各宿舍楼", "瓶颈", "已解除限制", "冲突", "被拒绝的勾选",
            "状态矩阵"} <= set(book.sheetnames)
    matrix = book["状态矩阵"]
    assert matrix.max_row == 2 + len(ROSTER)
    with zipfile.ZipFile(path) as archive:
        assert len([n for n in archive.namelist() if n.startswith("xl/charts/chart")]) >= 2


def test_report_writes_atomically_and_keeps_old_files_on_error(reported: Cli, monkeypatch: object) -> None:
    """No partial files remain; a failing render leaves the previous site intact."""
    import lixiao.reports.build as build

    reports = reported.data / "reports"
    assert not list(reports.rglob("*.partial"))
    before = (reports / "index.html").read_bytes()

    def broken(*args: object) -> bytes:
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "matrix_xml", broken)  # type: ignore[attr-defined]
    result = reported("report")  # the matrix is built in a forked child: its error comes back
    assert result.exit_code == 2 and "生成 Excel 报表失败：RuntimeError: disk full" in result.output
    assert (reports / "index.html").read_bytes() == before
    assert not list(reports.rglob("*.partial"))


def test_user_templates_override_the_bundled_ones(reported: Cli) -> None:
    """A template in the data folder's templates/ wins over the bundled one (ChoiceLoader)."""
    user = reported.data / "templates"
    user.mkdir()
    (user / "college.html").write_text('{% extends "base.html" %}{% block main %}本校自定义汇总表'
                                       "{{ college.name }}{% endblock %}", "utf-8")
    assert reported("report").exit_code == 0
    assert "本校自定义汇总表机电工程学院" in (reported.data / "reports" / "college-1.html").read_text("utf-8")


def test_sync_regenerates_the_reports(issued: Cli) -> None:
    """After a merge, reports/ reflects the new tick without running `lixiao report` (the default, [sync]
    reports = true); with reports = false `lixiao sync` leaves reports/ as it was."""
    import os
    import time

    from .conftest import edit, outbox, set_settings

    set_settings(issued.data, "sync", reports=True)
    path = issued.data / "inbox" / "u.xlsx"
    path.write_bytes(edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): True}))
    os.utime(path, (time.time() - 30, time.time() - 30))
    assert issued("sync").exit_code == 0
    js = (issued.data / "reports" / "students.js").read_text("utf-8")
    assert "0803010103" in js and (issued.data / "reports" / "index.html").exists()
    set_settings(issued.data, "sync", reports=False)
    before = (issued.data / "reports" / "index.html").stat().st_mtime_ns
    again = issued.data / "inbox" / "v.xlsx"
    again.write_bytes(edit(outbox(issued, "utilities")[0], {("0803010104", "清理电费"): True}))
    os.utime(again, (time.time() - 30, time.time() - 30))
    assert issued("sync").exit_code == 0
    assert (issued.data / "reports" / "index.html").stat().st_mtime_ns == before


def test_the_same_step_name_at_two_desks_is_labelled_with_its_checkpoint(reported: Cli, tmp_path: Path) -> None:
    """领取学位证 exists at the college desk and at 教务处: every header names its checkpoint (Excel matrix, the
    瓶颈 rows, both exports), so the two columns cannot be confused."""
    book = openpyxl.load_workbook(reported.data / "reports" / "离校进度.xlsx", read_only=True)
    matrix_headers = list(next(book["状态矩阵"].iter_rows(min_row=2, max_row=2, values_only=True)))
    bottleneck_names = [r[0] for r in book["瓶颈"].iter_rows(values_only=True)]
    csv_out, xlsx_out = tmp_path / "m.csv", tmp_path / "m.xlsx"
    assert reported("export", str(csv_out)).exit_code == 0 and reported("export", str(xlsx_out)).exit_code == 0
    csv_headers = csv_out.read_text("utf-8-sig").splitlines()[0].split(",")
    exported = openpyxl.load_workbook(xlsx_out, read_only=True)
    xlsx_headers = list(next(exported.active.iter_rows(min_row=2, max_row=2, values_only=True)))
    for headers in (matrix_headers, csv_headers, xlsx_headers):
        assert "领取学位证（学院领取证件）" in headers and "领取学位证（教务处离校点）" in headers
        assert "领取学位证" not in headers and len(set(headers)) == len(headers)
    assert "领取学位证（学院领取证件）" in bottleneck_names and "领取学位证" not in bottleneck_names
