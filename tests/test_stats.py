"""The report figures (core.stats over the status board) equal a brute-force count from the rules."""

from __future__ import annotations

import io
import random
from pathlib import Path

import openpyxl
import pytest
import python_calamine

from lixiao.core.clearance.clearance import Clearance
from lixiao.core.manual import rules
from lixiao.core.manual.flow import load_preset
from lixiao.core.manual.model import Flow, Status, Student
from lixiao.core.manual.stats import bottlenecks, checkpoint_progress, group_progress, school_progress
from lixiao.core.storage.store import Store
from lixiao.reports.data import collect
from lixiao.reports.excel import build_excel

from .conftest import make_student

OPEN = (Status.FAILED, Status.PENDING)


def random_store(tmp_path: Path, flow: Flow, seed: int) -> tuple[Store, list[Student]]:
    """80 students over three colleges with random flags and random stored statuses (NA stored included)."""
    rng = random.Random(seed)
    colleges = ["机电工程学院", "能源与安全工程学院", "理学院"]
    students = [make_student(f"08{i:08d}", id_card="", college=rng.choice(colleges), previous=rng.random() < .3,
                             national_loan=rng.random() < .4, local_loan=rng.random() < .3,
                             switch=rng.random() < .3, withheld_degree=rng.random() < .3,
                             withheld_diploma=rng.random() < .3)
                for i in range(80)]
    store = Store.create(tmp_path / "s.db", "2026届", 2026, "undergrad")
    store.upsert_students(students, source="test")
    with store.transaction():
        for s in students:
            for step in flow.all_steps():
                if rng.random() < 0.7:
                    status = rng.choice([Status.PASSED] * 4 + list(Status))
                    store.write_status(s.student_no, step.code, status, remark="", source="t", operator="",
                                       decision="applied")
    return store, students


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figures_equal_a_count_from_the_rules(tmp_path: Path, seed: int) -> None:
    """Every figure of the board (school, checkpoints, steps, groups, bottlenecks) and every Excel matrix cell
    equals a brute-force count from core/manual/rules.py on random data."""
    flow = load_preset("undergrad")
    store, students = random_store(tmp_path, flow, seed)
    stored = store.all_statuses()
    effective = {s.student_no: {step.code: rules.effective_status(step, s, stored.get(s.student_no, {}).get(step.code),
                                                                  2026)
                                for step in flow.all_steps()} for s in students}
    complete = {s.student_no: rules.is_complete(flow, s, stored.get(s.student_no, {}), 2026) for s in students}
    board = Clearance(store, flow).board()

    school = school_progress(board)
    assert (school.expected, school.expected_previous, school.unfinished, school.unfinished_previous) == (
        80, sum(s.previous for s in students), sum(not complete[s.student_no] for s in students),
        sum(s.previous and not complete[s.student_no] for s in students))

    def expect(steps: list[str]) -> tuple[int, int, int, int]:
        counted = [s for s in students if any(effective[s.student_no][c] is not Status.NA for c in steps)]
        open_ = [s for s in counted if any(effective[s.student_no][c] in OPEN for c in steps)]
        return (len(counted), sum(s.previous for s in counted), len(open_), sum(s.previous for s in open_))

    multi = 0
    for cp, step_figures in checkpoint_progress(flow, board):
        checkpoint = flow.checkpoint(cp.code)
        required = [s.code for s in checkpoint.steps if s.required]
        multi += len(required) > 1
        assert (cp.expected, cp.expected_previous, cp.unfinished, cp.unfinished_previous) == expect(required), cp
        for p in step_figures:
            assert (p.expected, p.expected_previous, p.unfinished, p.unfinished_previous) == expect([p.code]), p
    assert multi >= 2  # the fixture exercises checkpoints with several required steps

    colleges, rows = bottlenecks(flow, board)
    assert colleges == sorted({s.college for s in students})
    for code, _, per, total in rows:
        wanted: dict[str, int] = {}
        for s in students:
            if effective[s.student_no][code] in OPEN:
                wanted[s.college] = wanted.get(s.college, 0) + 1
        assert per == wanted and total == sum(wanted.values())
    assert {r[0] for r in rows} == {s.code for s in flow.all_steps() if s.required
                                    and any(effective[n][s.code] in OPEN for n in effective)}
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)

    by_college = {g.name: (g.expected, g.expected_previous, g.complete) for g in group_progress(board, "college")}
    assert by_college == {c: (sum(s.college == c for s in students),
                              sum(s.college == c and s.previous for s in students),
                              sum(s.college == c and complete[s.student_no] for s in students)) for c in colleges}

    # The Excel report's spliced matrix says the same, cell by cell.
    report = build_excel(collect(store, flow))
    book = openpyxl.load_workbook(io.BytesIO(report), read_only=True)
    rows_read = list(book["状态矩阵"].iter_rows(min_row=3, values_only=True))
    fast = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(report)).get_sheet_by_name("状态矩阵")
    assert fast.to_python()[2:] == [["" if v is None else v for v in row] for row in rows_read]
    assert len(rows_read) == 80
    for s, row in zip(sorted(students, key=lambda s: s.student_no), rows_read, strict=True):
        labels = [None if effective[s.student_no][st.code] is Status.NA else effective[s.student_no][st.code].label
                  for st in flow.all_steps()]
        assert list(row) == [s.student_no, s.name, s.college, s.class_name, s.level, s.dorm,
                             "是" if s.previous else None,
                             *labels, "是" if complete[s.student_no] else "否"]


def test_matrix_text_is_escaped_column_by_column() -> None:
    """Markup is escaped, characters XML cannot hold are dropped, and a value holding the separator
    used to escape a column at once does not shift the others."""
    from lixiao.workbooks.inline import escape_all as _escape_all

    assert _escape_all(["<b>&", "a\x01b", "tab\tok\x0b", ""]) == ["&lt;b&gt;&amp;", "ab", "tab\tok", ""]
    assert _escape_all(["<i>", "x", ""]) == ["&lt;i&gt;", "x", ""]
    assert _escape_all(["a\x01b", "c"]) == ["ab", "c"]  # only the separator: still one value each
    assert _escape_all(["丁德卫", "沈睿", ""]) == ["丁德卫", "沈睿", ""]
    assert _escape_all([]) == []
    # neither can XML 1.0 hold U+FFFF, U+FFFE or a lone surrogate (a receipt's 交回内容 held "\uffff坏")
    assert _escape_all(["\uffff坏", "a\ud800b", "\ufffe", "ok"]) == ["坏", "ab", "", "ok"]


def test_a_receipt_listing_odd_characters_is_well_formed() -> None:
    """Every listing of a receipt parses as XML and keeps every row, whatever its cells held."""
    import io
    import zipfile
    from xml.etree import ElementTree

    from lixiao.workbooks.receipt import build_receipt

    rows = [["0803010101", "张三", "清理电费", "\uffff坏", "原因\x0b"], ["0803010102", "李四", "x", "a\ud800b", "]]>"]]
    data = build_receipt([("文件", "r.xlsx")], {"refused": rows})
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet2.xml"))
    texts = ["".join(t.itertext()) for t in sheet.iter("{http://schemas.openxmlformats.org/spreadsheetml/2006/main}is")]
    assert texts == ["0803010101", "张三", "清理电费", "坏", "原因", "0803010102", "李四", "x", "ab", "]]>"]


def test_board_ignores_statuses_of_steps_the_flow_no_longer_has(tmp_path: Path) -> None:
    """A status stored for a step later removed from flow.toml changes no code."""
    flow = load_preset("undergrad")
    store, students = random_store(tmp_path, flow, 4)
    before = Clearance(store, flow).board().codes
    with store.transaction():
        for s in students[:10]:
            store.write_status(s.student_no, "retired_step", Status.FAILED, remark="", source="t", operator="",
                               decision="applied")
    assert Clearance(store, flow).board().codes == before


def test_text_rows_are_the_same_however_they_are_chunked() -> None:
    """Rows built a chunk at a time are numbered on across chunks and equal the rows built at once."""
    from lixiao.workbooks.inline import text_rows

    rows = [[f"学号{n}", "" if n % 3 else "<备注>", "x"][: 1 + n % 3] for n in range(11)]
    assert text_rows(rows, 2, 5, chunk=3) == text_rows(rows, 2, 5, chunk=4096)
    assert text_rows(rows, 2, 5, chunk=3).count(b"<row ") == 11 and b'<row r="12">' in text_rows(rows, 2, 5, chunk=3)
