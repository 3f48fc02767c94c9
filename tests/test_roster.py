"""Roster import: Chinese headers in any order, IDs as text, every bad row listed with its reason."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lixiao.core.manual.roster import COLUMNS, RosterError, parse_dorm, parse_flag, validate_roster
from lixiao.workbooks.roster import build_roster_template
from lixiao.workbooks.tables import TableError, read_table

from .conftest import Cli, make_id


def xlsx(rows: list[list[Any]]) -> bytes:
    """An .xlsx whose cells keep their Python types (numbers stay numbers, as Excel would store them)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


HEADER = ["学号", "姓名", "性别", "身份证号", "院系", "专业", "班级", "宿舍", "培养层次", "国家助学贷款"]


def good(no: str, seq: int, **overrides: Any) -> list[Any]:
    """One valid roster row in HEADER order."""
    row = {"学号": no, "姓名": "张三", "性别": "男", "身份证号": make_id(seq), "院系": "机电工程学院",
           "专业": "机械设计制造及其自动化", "班级": "22机设3班", "宿舍": "8区-10栋-1层-0121", "培养层次": "本科",
           "国家助学贷款": "否"}
    row.update(overrides)
    return [row[h] for h in HEADER]


def parse(rows: list[list[Any]]):  # type: ignore[no-untyped-def]
    """Read and validate an in-memory roster."""
    table = read_table(xlsx([HEADER, *rows]), "r.xlsx")
    return validate_roster(table.headers, table.rows)


def test_valid_rows_import_with_flags_and_dorms() -> None:
    """Good rows become students; 是/否 flags parsed; the header order does not matter."""
    result = parse([good("2203010101", 1, 国家助学贷款="是"), good("2203010102", 2, 宿舍="")])
    assert result.problems == []
    assert [s.national_loan for s in result.students] == [True, False]
    assert result.students[1].dorm == ""


def test_every_bad_row_is_listed_with_row_number_and_reason() -> None:
    """Bad check digit, number-typed 学号, bad dorm and bad level each name their row."""
    bad_id = make_id(3)[:-1] + ("0" if make_id(3)[-1] != "0" else "1")
    result = parse([
        good("2203010101", 1),
        good(203010102, 2),
        good("2203010103", 3, 身份证号=bad_id),
        good("2203010104", 4, 宿舍="8区10栋"),
        good("2203010105", 5, 培养层次="专科"),
    ])
    assert [p.row for p in result.problems] == [3, 4, 5, 6]
    messages = [str(p) for p in result.problems]
    assert messages[0].startswith("第 3 行：学号 203010102 是数字格式，比其他学号少 1 位，可能丢了开头的 0")
    assert "设为“文本”格式" in messages[0]
    assert "身份证号校验位错误" in messages[1]
    assert "宿舍“8区10栋”格式应为 区-栋-层-房间" in messages[2]
    assert "培养层次“专科”" in messages[3]
    assert len(result.students) == 1


def test_a_numeric_student_no_as_long_as_the_others_is_taken_with_a_notice() -> None:
    """A 学号 Excel stored as a number, as long as the roster's text 学号 (no leading 0 lost), is taken as text and
    the rows are named in a warning; without any text 学号 to compare it is refused, pointing to --numeric-ids."""
    result = parse([good("2203010101", 1), good(2203010102, 2), good(2203010103, 3)])
    assert result.problems == []
    assert [s.student_no for s in result.students] == ["2203010101", "2203010102", "2203010103"]
    [notice] = result.warnings
    assert notice.startswith("第 3、4 行的学号是数字格式，与其他学号一样是 10 位") and "文本" in notice
    alone = parse([good(2203010102, 2), good(2203010103, 3)])
    assert len(alone.problems) == 2 and "--numeric-ids" in str(alone.problems[0])
    table = read_table(xlsx([HEADER, good(2203010102, 2), good(2203010103, 3)]), "r.xlsx")
    trusted = validate_roster(table.headers, table.rows, numeric_ids=True)
    assert trusted.problems == [] and [s.student_no for s in trusted.students] == ["2203010102", "2203010103"]


def test_number_typed_id_card_is_refused() -> None:
    """A 身份证号 stored as a number has already lost digits; it is refused, not guessed."""
    result = parse([good("2203010101", 1, 身份证号=430103200401010000)])
    assert "身份证号是数字格式" in str(result.problems[0])


def test_duplicates_are_reported_on_both_rows() -> None:
    """Two rows with one 学号 (or one 身份证号) are both refused, each pointing at the other."""
    result = parse([good("2203010101", 1), good("2203010101", 2), good("2203010103", 1)])
    text = [str(p) for p in result.problems]
    assert text[0] == "第 2 行（学号 2203010101）：学号重复（与第 3 行相同）；身份证号重复（与第 4 行相同）"
    assert "学号重复（与第 2 行相同）" in text[1]
    assert "身份证号重复（与第 2 行相同）" in text[2]
    assert result.students == []


def test_missing_column_refuses_the_file() -> None:
    """Without a required column nothing is read and the template is suggested."""
    table = read_table(xlsx([["学号", "姓名"], ["1", "张三"]]), "r.xlsx")
    with pytest.raises(RosterError, match="名单缺少必需的列：身份证号、院系、班级。请用 lixiao students template"):
        validate_roster(table.headers, table.rows)


def test_scientific_notation_student_no_is_explained() -> None:
    """A 学号 that Excel turned into 2.2E+09 text gets its own explanation."""
    result = parse([good("2.20301E+09", 1)])
    assert "科学计数法" in str(result.problems[0])


def test_full_width_student_no_is_folded() -> None:
    """学号 typed with full-width digits imports as the ASCII 学号."""
    result = parse([good("２２０３０１０１０１", 1)])
    assert result.students[0].student_no == "2203010101"


def test_flags_and_dorms_parse() -> None:
    """Flag cells accept 是/否, 1/0, Y/N, TRUE/FALSE, ✓ and empty; dorms are 区-栋-层-房间."""
    assert [parse_flag(v) for v in ("是", "1", "y", "TRUE", "✓", True, 1)] == [True] * 7
    assert [parse_flag(v) for v in ("否", "0", "N", "false", "", None, False, 0)] == [False] * 8
    assert parse_flag("也许") is None and parse_flag(2) is None
    assert parse_dorm("2区-3栋-3层-0309") == "2区-3栋-3层-0309"
    assert parse_dorm("无住宿信息") == ""
    assert parse_dorm("3栋309") is None


def test_csv_in_gbk_is_read(tmp_path: Path) -> None:
    """A CSV saved by Chinese Excel (GBK) reads like UTF-8."""
    text = ",".join(HEADER) + "\n" + ",".join(str(v) for v in good("2203010101", 1)) + "\n"
    table = read_table(text.encode("gb18030"), "r.csv")
    result = validate_roster(table.headers, table.rows)
    assert result.students[0].name == "张三"


def test_renamed_or_legacy_files_are_refused_clearly() -> None:
    """An .xls (OLE) file or junk named .xlsx gets a message that says what to do."""
    with pytest.raises(TableError, match=r"旧版 \.xls 或加密的工作簿"):
        read_table(b"\xd0\xcf\x11\xe0" + b"\0" * 100, "r.xlsx")
    with pytest.raises(TableError, match=r"不是有效的 \.xlsx 文件"):
        read_table(b"<html></html>", "r.xlsx")
    with pytest.raises(TableError, match="是空文件"):
        read_table(b"", "r.csv")


def test_template_has_the_headers_and_reimports_its_example() -> None:
    """The template's headers are the expected ones and its example row is valid."""
    table = read_table(build_roster_template(), "t.xlsx")
    assert tuple(table.headers) == COLUMNS
    result = validate_roster(table.headers, table.rows)
    assert result.problems == [] and len(result.students) == 1


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(COLUMNS), st.one_of(
    st.none(), st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.booleans())))
def test_any_cell_values_give_a_student_or_reasons_never_a_crash(cells: dict[str, Any]) -> None:
    """Whatever a cell holds, validation answers with a student or reasons (or "no rows"), never a crash."""
    blank = all(v is None or (isinstance(v, str) and not v.strip()) for v in cells.values())
    if blank:
        with pytest.raises(RosterError, match="没有任何学生行"):
            validate_roster(list(COLUMNS), [(2, cells)])
        return
    result = validate_roster(list(COLUMNS), [(2, cells)])
    assert len(result.students) + len(result.problems) == 1


def test_cli_import_with_bad_rows_imports_nothing(cli: Cli, tmp_path: Path) -> None:
    """One bad row makes the whole import refused (exit 1) unless --skip-bad is given."""
    path = tmp_path / "bad.xlsx"
    path.write_bytes(xlsx([HEADER, good("2203010101", 1), good(203010102, 2)]))  # a 学号 that lost its leading 0
    before = cli.json("flow", "show")  # the folder opens fine
    result = cli("students", "import", str(path))
    assert result.exit_code == 1
    assert "第 3 行" in result.output and "没有导入任何学生" in result.output
    assert cli("status", "2203010101").exit_code == 2
    result = cli("students", "import", str(path), "--skip-bad")
    assert result.exit_code == 1 and "新增 1" in result.output
    assert cli("status", "2203010101").exit_code == 0
    assert before["checkpoints"]


def test_cli_reimport_is_idempotent(cli: Cli, roster_file: Path) -> None:
    """Importing the same roster again changes nothing and says so."""
    result = cli("students", "import", str(roster_file))
    assert result.exit_code == 0
    assert "新增 0，更新 0，未变 5" in result.output
