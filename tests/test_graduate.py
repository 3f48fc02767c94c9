"""The graduate flow end to end with a roster that has no classes (manual §3.3: 班级 ____): import, issue,
feeds, every office's return, certificates, and reports grouped by 培养层次 and 专业."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from click.testing import CliRunner

from lixiao.core.manual import rules
from lixiao.core.manual.flow import load_preset
from lixiao.core.manual.roster import parse_dorm
from lixiao.core.manual.stats import building
from lixiao.sync.cli.main import main
from lixiao.workbooks.roster import build_roster, roster_row

from .conftest import Cli, drop, edit, make_id, make_student, rows, sync

GRADUATES = [
    make_student("2301010101", name="周硕", class_name="", level="硕士", major="机械工程",
                 dorm="研究生公寓-1栋-2层-0201"),
    make_student("2301010102", name="吴研", class_name="", level="硕士", major="机械工程", gender="女",
                 id_card=make_id(102, False), dorm="研究生公寓-1栋-2层-0201"),
    make_student("2302010103", name="郑博", class_name="", level="博士", major="安全科学与工程",
                 college="能源与安全工程学院", id_card=make_id(103), dorm=""),
]


def graduate_folder(tmp_path: Path) -> Cli:
    """An initialised graduate folder with the classless roster imported through the CLI."""
    runner = CliRunner()
    data = tmp_path / "grad"
    created = runner.invoke(main, ["init", str(data), "--flow", "graduate", "--session", "2026届研究生离校"])
    assert created.exit_code == 0, created.output
    roster = tmp_path / "研究生名单.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in GRADUATES]))
    cli = Cli(data, runner)
    result = cli("students", "import", str(roster))
    assert result.exit_code == 0, result.output
    assert "班级为空" not in result.output
    return cli


def test_undergraduate_rosters_still_need_a_class(cli: Cli, tmp_path: Path) -> None:
    """Where the flow ticks by class (undergrad: 按班级), a blank 班级 is refused row by row, saying why."""
    roster = tmp_path / "blank.xlsx"
    roster.write_bytes(build_roster([roster_row(GRADUATES[0])]))
    result = cli("students", "import", str(roster))
    assert result.exit_code != 0 and "班级为空（本流程有按班级批量办理的离校点" in result.output


def test_graduate_flow_end_to_end_without_classes(tmp_path: Path) -> None:
    """A classless graduate roster imports; every office's workbook is ticked for 周硕 and returned, the feeds clear
    him, the certificate desk hands out; the reports group by 培养层次 (硕士/博士) and 专业, titled so."""
    cli = graduate_folder(tmp_path)
    flow = load_preset("graduate")
    assert cli("issue").exit_code == 0
    library = tmp_path / "图书馆.csv"
    library.write_text("学号,借阅册数,欠费\n" + "".join(f"{s.student_no},0,0\n" for s in GRADUATES), "utf-8")
    finance = tmp_path / "财务.csv"
    finance.write_text("学号,欠费金额\n" + "".join(f"{s.student_no},0\n" for s in GRADUATES), "utf-8")
    assert cli("feed", "library", str(library)).exit_code == 0
    assert cli("feed", "finance", str(finance)).exit_code == 0

    student = GRADUATES[0]
    desks = [cp for cp in flow.checkpoints if cp.steps and cp.kind != "waiver"]
    for last in (False, True):  # the certificate desk (it requires the others) after every other office
        for cp in [c for c in desks if bool(c.requires) == last]:
            ticks = {(student.student_no, s.name): True for s in cp.steps
                     if s.source == "workbook" and s.enabled(2026) and rules.applies(s, student)}
            if not ticks:
                continue
            books = [p for p in sorted((cli.data / "outbox" / cp.code).glob("*.xlsx")) if student.college in p.name
                     or not cp.per_college]
            drop(cli, f"{cp.code}.xlsx", edit(books[0], ticks))
            [item] = sync(cli)["files"]
            assert (item["outcome"], item["refused"]) == ("merged", 0), item
            assert item["applied"] == len(ticks)
    record = cli.json("status", student.student_no)
    assert record["complete"] is True, record

    assert cli("report").exit_code == 0
    reports = cli.data / "reports"
    index = (reports / "index.html").read_text("utf-8")
    assert 'id="level-table"' in index and "<td>硕士</td>" in index and "<td>博士</td>" in index
    assert "专业明细与汇总表" in index and "班级明细" not in index
    page = next(p for p in reports.glob("college-*.html") if "机电工程学院" in p.read_text("utf-8"))
    html = page.read_text("utf-8")
    assert "<th>培养层次 · 专业</th>" in html and "<td>硕士 机械工程</td>" in html
    book = openpyxl.load_workbook(reports / "离校进度.xlsx", read_only=True)
    assert "各培养层次" in book.sheetnames and "各专业" in book.sheetnames and "各班级" not in book.sheetnames
    levels = {r[0]: r[1:5] for r in book["各培养层次"].iter_rows(values_only=True) if r[0] in ("硕士", "博士")}
    assert levels == {"博士": (1, 0, 0, 1), "硕士": (2, 0, 1, 1)}
    majors = [r[:3] for r in book["各专业"].iter_rows(min_row=2, values_only=True) if r[0]]
    assert ("机电工程学院", "硕士 机械工程", 2) in majors


def test_graduates_as_the_manual_shows_them(tmp_path: Path) -> None:
    """Dorms as graduate housing writes them (研究生公寓-1栋-2层-0201) import and batch by room; 培养层次 (硕士/博士)
    is on every workbook row after 专业, in `status`, and in the Excel report's status matrix; a 培养层次 edited in a
    return is refused like any identity cell."""
    cli = graduate_folder(tmp_path)
    assert cli("issue").exit_code == 0
    path = next((cli.data / "outbox" / "graduate_school").glob("*.xlsx"))
    book = openpyxl.load_workbook(path)
    rooms = book["按宿舍"]
    head = next(r for r in range(1, 10) if rooms.cell(r, 1).value == "宿舍")
    assert [(rooms.cell(r, 1).value, rooms.cell(r, 2).value) for r in range(head + 1, rooms.max_row + 1)] == [
        ("研究生公寓-1栋-2层-0201", "2")]
    main_sheet = book["办理"]
    head = next(r for r in range(1, 10) if main_sheet.cell(r, 1).value == "学号")
    titles = [c.value for c in main_sheet[head]]
    assert titles[titles.index("专业") + 1] == "培养层次"
    levels = {main_sheet.cell(r, 1).value: main_sheet.cell(r, titles.index("培养层次") + 1).value
              for r in range(head + 1, main_sheet.max_row + 1)}
    assert levels == {"2301010101": "硕士", "2301010102": "硕士", "2302010103": "博士"}
    record = cli.json("status", "2302010103")
    assert record["level"] == "博士" and "博士" in cli("status", "2302010103").output
    assert cli("report").exit_code == 0
    matrix = openpyxl.load_workbook(cli.data / "reports" / "离校进度.xlsx", read_only=True)["状态矩阵"]
    lines = [r for r in matrix.iter_rows(values_only=True) if r and r[0]]
    lines = lines[next(i for i, r in enumerate(lines) if r[0] == "学号"):]
    header = list(lines[0])
    assert header[header.index("班级") + 1] == "培养层次"
    assert {r[0]: r[header.index("培养层次")] for r in lines[1:]} == levels
    main_sheet.cell(head + 1, titles.index("培养层次") + 1).value = "博士"
    edited = tmp_path / "edited.xlsx"
    book.save(edited)
    drop(cli, "graduate_school.xlsx", edited.read_bytes())
    [item] = sync(cli)["files"]
    assert (item["applied"], item["refused"]) == (0, 1)
    reasons = [reason for (reason,) in rows(cli, "SELECT reason FROM refused_ticks")]
    assert any("培养层次“博士”（签发时为“硕士”）" in reason for reason in reasons)


def test_dorm_addresses_of_graduate_housing() -> None:
    """A named building's 栋-层-房间 (研究生公寓-1栋-2层-0201) is a dorm like 2区-3栋-3层-0309 and counts under its
    building (研究生公寓-1栋); a bare number for the 区 or a run-together address is still refused."""
    assert parse_dorm("研究生公寓-1栋-2层-0201") == "研究生公寓-1栋-2层-0201"
    assert parse_dorm("2区-3栋-3层-0309") == "2区-3栋-3层-0309"
    assert parse_dorm("3-1栋-2层-0201") is None and parse_dorm("研究生公寓1栋201") is None
    assert building("研究生公寓-1栋-2层-0201") == "研究生公寓-1栋"
