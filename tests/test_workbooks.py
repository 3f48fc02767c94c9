"""Issued workbooks: contents, real checkboxes, text never a formula, signed tokens, and the tolerant reader."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter

from lixiao.core.manual.model import Status
from lixiao.workbooks.layout import MAIN_SHEET, META_SHEET
from lixiao.workbooks.reader import read_returned

from .conftest import ROSTER, Cli, edit, key_of, make_student, outbox


def test_issue_writes_one_file_per_office_and_college(issued: Cli) -> None:
    """Per-college checkpoints get one file per college; names say session, office, scope and generation."""
    colleges = {s.college for s in ROSTER}
    assert len(outbox(issued, "college")) == len(colleges)
    assert [p.name for p in outbox(issued, "utilities")] == ["2026届本科毕业生离校-水电通信中心离校点-全部-第1版.xlsx"]
    assert {p.name for p in outbox(issued, "certificates")} == {
        f"2026届本科毕业生离校-{c}领取证件-第1版.xlsx" for c in colleges}
    assert not (issued.data / "outbox" / "library").exists()  # set by the library feed, nothing to tick


def test_reissue_raises_generation_and_old_stays_known(issued: Cli) -> None:
    """A second issue is 第2版 with its own id; the first remains registered for merging."""
    first = read_returned(outbox(issued, "utilities")[0].read_bytes(), key_of(issued))
    assert issued("issue", "--checkpoint", "utilities").exit_code == 0
    files = outbox(issued, "utilities")
    assert [p.name.rsplit("-", 1)[1] for p in files] == ["第1版.xlsx", "第2版.xlsx"]
    second = read_returned(files[1].read_bytes(), key_of(issued))
    assert second.token.payload and first.token.payload
    assert second.token.payload["generation"] == 2 and first.token.payload["generation"] == 1
    import sqlite3
    ids = {r[0] for r in sqlite3.connect(issued.data / "store.db").execute("SELECT id FROM workbooks")}
    assert {first.token.payload["workbook_id"], second.token.payload["workbook_id"]} <= ids


def test_unknown_checkpoint_and_feed_only_office_are_refused(issued: Cli) -> None:
    """Asking for a checkpoint that does not exist or has nothing to tick is a one-line error."""
    assert issued("issue", "--checkpoint", "canteen").output.startswith("错误：没有离校点 canteen")
    assert "不需要工作簿" in issued("issue", "--checkpoint", "library").output


def test_reader_returns_the_issued_state(issued: Cli) -> None:
    """Reading an untouched workbook gives a valid token, every student, nothing ticked, no anomaly."""
    returned = read_returned(outbox(issued, "utilities")[0].read_bytes(), key_of(issued))
    assert returned.token.status == "valid" and returned.students_match is True
    assert set(returned.rows) == {s.student_no for s in ROSTER}
    assert all(row.marks == {"electricity": Status.PENDING} for row in returned.rows.values())
    assert returned.anomalies == [] and returned.operator == ""


def test_passed_cells_are_issued_ticked(cli: Cli) -> None:
    """A step already passed in the store is a ticked checkbox in the workbook."""
    cli("set", "0803010103", "electricity", "passed")
    cli("issue", "--checkpoint", "utilities")
    returned = read_returned(outbox(cli, "utilities")[0].read_bytes(), key_of(cli))
    assert returned.rows["0803010103"].marks["electricity"] is Status.PASSED
    assert returned.rows["0803010104"].marks["electricity"] is Status.PENDING


def test_registrar_lists_only_withheld_students(issued: Cli) -> None:
    """The 教务处 workbook holds exactly the students whose certificates were withheld."""
    returned = read_returned(outbox(issued, "registrar")[0].read_bytes(), key_of(issued))
    assert set(returned.rows) == {s.student_no for s in ROSTER if s.withheld}


def test_id_card_masked_except_for_loan_matching(issued: Cli) -> None:
    """身份证号 is masked 6+4, but shown in full to the college for its national-loan holders."""
    files = outbox(issued, "college")
    rows = {}
    for path in files:
        rows.update(read_returned(path.read_bytes(), key_of(issued)).rows)
    holder, plain = ROSTER[1], ROSTER[0]
    assert rows[holder.student_no].identity["身份证号"] == holder.id_card
    assert rows[plain.student_no].identity["身份证号"] == plain.id_card[:6] + "********" + plain.id_card[-4:]
    utilities = read_returned(outbox(issued, "utilities")[0].read_bytes(), key_of(issued))
    assert all("*" in r.identity["身份证号"] for r in utilities.rows.values())


def test_non_applicable_cells_are_blank(issued: Cli) -> None:
    """A student without a loan has a blank 国家助学贷款还款确认 cell, not an unticked box."""
    path = next(p for p in outbox(issued, "college") if "机电工程学院" in p.name)
    book = openpyxl.load_workbook(path)
    ws = book[MAIN_SHEET]
    header = [c.value for c in ws[4]]
    col = header.index("国家助学贷款还款确认") + 1
    values = {ws.cell(r, 1).value: ws.cell(r, col).value for r in range(5, ws.max_row + 1)}
    assert values[ROSTER[1].student_no] is False  # holder: an unticked box
    assert values[ROSTER[0].student_no] is None  # not applicable: blank


def test_prerequisite_column_explains_in_the_manuals_words(issued: Cli) -> None:
    """The certificate desk's 前置条件 says what is missing, e.g. 财务处离校点：缴还欠款."""
    path = next(p for p in outbox(issued, "certificates") if "机电工程学院" in p.name)
    ws = openpyxl.load_workbook(path)[MAIN_SHEET]
    header = [c.value for c in ws[4]]
    text = ws.cell(5, header.index("前置条件") + 1).value
    assert text.startswith("未满足：机电工程学院离校点：转出党团组织关系") and "财务处离校点：缴还欠款" in text
    utilities = openpyxl.load_workbook(outbox(issued, "utilities")[0])[MAIN_SHEET]
    assert utilities.cell(5, [c.value for c in utilities[4]].index("前置条件") + 1).value == "已满足"


def test_batch_sheet_groups_a_dorm_room(cli: Cli, tmp_path: Path) -> None:
    """按宿舍 has one row per room with its members' names and counts; ticking it is read as a batch tick."""
    cli("issue", "--checkpoint", "utilities")
    path = outbox(cli, "utilities")[0]
    ws = openpyxl.load_workbook(path)["按宿舍"]
    rows = {ws.cell(r, 1).value: [c.value for c in ws[r]] for r in range(5, ws.max_row + 1)}
    room = rows["8区-10栋-1层-0121"]
    assert room[1] == "3" and set(room[2].split("、")) == {"丁德卫", "沈睿", "雷宇"} and room[3] == "0/3"
    ticked = edit(path, {("8区-10栋-1层-0121", "清理电费"): True}, sheet="按宿舍")
    batch = [b for b in read_returned(ticked, key_of(cli)).batch if b.ticked]
    assert [(b.mode, b.group, b.step) for b in batch] == [("dorm", "8区-10栋-1层-0121", "electricity")]


def test_special_desk_lists_restricted_steps(cli: Cli) -> None:
    """The special desk workbook has a row per unfinished restricted step, ticked where already lifted."""
    cli("waive", "0803010104", "pay_arrears", "--reason", "欠费缓交")
    cli("issue", "--checkpoint", "special")
    returned = read_returned(outbox(cli, "special")[0].read_bytes(), key_of(cli))
    waivers = {w.student_no: (w.step, w.lifted, w.reason) for w in returned.waivers}
    assert waivers["0803010104"] == ("pay_arrears", True, "欠费缓交")
    assert waivers["0803010103"] == ("pay_arrears", False, "")
    assert len(waivers) == 5 and returned.students_match


@pytest.mark.parametrize("mark", [True, 1, "√", "✓", "✔", "是", "Y", "y", "1", "TRUE", "通过"])
def test_typed_ticks_are_read_as_ticked(issued: Cli, mark: Any) -> None:
    """Every mark staff type for 'done' reads as ticked."""
    data = edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): mark})
    assert read_returned(data, key_of(issued)).rows["0803010103"].marks["electricity"] is Status.PASSED


@pytest.mark.parametrize("mark", [False, 0, "", "FALSE", "0", "否", "N", None])
def test_typed_non_ticks_are_read_as_unticked(issued: Cli, mark: Any) -> None:
    """Empty, FALSE, 0, 否 and N read as not ticked."""
    data = edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): mark})
    assert read_returned(data, key_of(issued)).rows["0803010103"].marks["electricity"] is Status.PENDING


@pytest.mark.parametrize(("mark", "reason"), [
    ("也许", "无法识别的勾选内容“也许”"),
    ("=TRUE()", "没有保存计算结果"),
    ("=A1", "单元格是公式（=A1）"),
    ('="×"', '单元格是公式（="×"）'),  # the formula text unescaped, not =&quot;×&quot;
    ("F", "含义不明"),  # FALSE to some, fail to others
    (2, "无法识别的勾选内容“2”"),
])
def test_unrecognised_marks_are_anomalies_not_unticked(issued: Cli, mark: Any, reason: str) -> None:
    """A mark the reader cannot be sure of is reported with its cell, and is absent from the ticks."""
    returned = read_returned(edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): mark}),
                             key_of(issued))
    assert "electricity" not in returned.rows["0803010103"].marks
    [anomaly] = returned.anomalies
    assert anomaly.code == "bad_mark" and reason in anomaly.reason and anomaly.student_no == "0803010103"
    assert re.fullmatch(r"[A-Z]+\d+", anomaly.cell)


def test_operator_cell_is_read(issued: Cli) -> None:
    """The 经办人 written at the top is returned with the ticks."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    book[MAIN_SHEET]["B2"] = "水电王老师"
    buffer = io.BytesIO()
    book.save(buffer)
    assert read_returned(buffer.getvalue(), key_of(issued)).operator == "水电王老师"


def test_token_signed_with_another_key_or_edited_is_recognised(issued: Cli) -> None:
    """Another data folder's key, or one changed character in the payload, fails the signature."""
    data = outbox(issued, "utilities")[0].read_bytes()
    assert read_returned(data, b"another key").token.status == "bad_signature"
    book = openpyxl.load_workbook(io.BytesIO(data))
    meta = book[META_SHEET]
    meta["A2"] = str(meta["A2"].value).replace('"generation":1', '"generation":9')
    buffer = io.BytesIO()
    book.save(buffer)
    assert read_returned(buffer.getvalue(), key_of(issued)).token.status == "bad_signature"


def test_changed_student_list_is_recognised(issued: Cli) -> None:
    """Deleting a student's row (or adding one) no longer matches the issued list's hash."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    book[MAIN_SHEET].delete_rows(5)
    buffer = io.BytesIO()
    book.save(buffer)
    returned = read_returned(buffer.getvalue(), key_of(issued))
    assert returned.students_match is False
    assert any(a.code == "students_changed" for a in returned.anomalies)


def test_a_dropped_hidden_sheet_is_survived_by_the_token_in_the_properties(issued: Cli) -> None:
    """A suite that drops the hidden _lixiao sheet keeps the document properties: the token is read from them
    and its signature checked; without those too there is no token."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    del book[META_SHEET]
    buffer = io.BytesIO()
    book.save(buffer)
    token = read_returned(buffer.getvalue(), key_of(issued)).token
    assert token.status == "valid" and (token.payload or {})["checkpoint"] == "utilities"
    book.custom_doc_props.props = [p for p in book.custom_doc_props.props if not p.name.startswith("lixiao_token")]
    buffer = io.BytesIO()
    book.save(buffer)
    assert read_returned(buffer.getvalue(), key_of(issued)).token.status == "missing"


def test_a_hidden_sheet_and_properties_that_disagree_are_refused(issued: Cli) -> None:
    """The hidden sheet of one workbook with another workbook's properties: the two identities disagree."""
    first, second = outbox(issued, "utilities")[0], outbox(issued, "dorm")[0]
    book = openpyxl.load_workbook(first)
    other = openpyxl.load_workbook(second)
    book.custom_doc_props = other.custom_doc_props
    buffer = io.BytesIO()
    book.save(buffer)
    assert read_returned(buffer.getvalue(), key_of(issued)).token.status == "bad_signature"


def _with_parts(data: bytes, parts: dict[str, bytes]) -> bytes:
    """The same zip with some parts replaced or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename not in parts:
                target.writestr(info, source.read(info))
        for name, body in parts.items():
            target.writestr(name, body)
    return out.getvalue()


def _app(name: str, version: str) -> bytes:
    return (f'<?xml version="1.0"?><Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'extended-properties"><Application>{name}</Application><AppVersion>{version}</AppVersion>'
            "</Properties>").encode()


def test_the_program_that_saved_a_return_is_named(issued: Cli) -> None:
    """WPS by KSOProductBuildVer (whatever app.xml says), LibreOffice and Excel by app.xml; lixiao's own
    untouched file is 未知."""
    data = outbox(issued, "utilities")[0].read_bytes()
    assert read_returned(data, key_of(issued)).program.startswith("未知")
    libre = _with_parts(data, {"docProps/app.xml": _app("LibreOffice/7.4.7.2$Linux_X86_64 LibreOffice_project/40", "")})
    assert read_returned(libre, key_of(issued)).program == "LibreOffice 7.4.7.2"
    excel = _with_parts(data, {"docProps/app.xml": _app("Microsoft Excel", "16.0300")})
    assert read_returned(excel, key_of(issued)).program == "Microsoft Excel 16.0300"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        custom = archive.read("docProps/custom.xml")
    kso = custom.replace(b"</Properties>", b'<property fmtid="{D5CDD505-2E9C-101B-9397-08002B2CF9AE}" pid="99" '
                         b'name="KSOProductBuildVer"><vt:lpwstr>2052-12.1.0.17827</vt:lpwstr></property>'
                         b"</Properties>")
    wps = _with_parts(excel, {"docProps/custom.xml": kso})
    returned = read_returned(wps, key_of(issued))
    assert returned.program == "WPS 2052-12.1.0.17827" and returned.token.status == "valid"


def test_duplicate_student_rows_are_reported(issued: Cli) -> None:
    """Two rows with one 学号 keep the first and report the second."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    ws = book[MAIN_SHEET]
    ws.cell(6, 1).value = ws.cell(5, 1).value
    buffer = io.BytesIO()
    book.save(buffer)
    returned = read_returned(buffer.getvalue(), key_of(issued))
    assert len(returned.duplicates) == 1
    assert any(a.code == "duplicate_student" for a in returned.anomalies)


def test_user_text_is_never_a_formula_or_link(cli: Cli, tmp_path: Path) -> None:
    """Names like =1+1, http://…, @x and {=x} are written and read back as plain text."""
    from lixiao.workbooks.roster import build_roster, roster_row

    nasty = ["=1+1", "http://evil.example/x", "@SUM(A1)", "{=A1}"]
    students = [make_student(f"09000000{i}", name=name, id_card=make_student(f"09000000{i}").id_card)
                for i, name in enumerate(nasty)]
    roster = tmp_path / "nasty.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in students]))
    assert cli("students", "import", str(roster)).exit_code == 0
    cli("set", "090000000", "electricity", "failed", "--remark", "=HYPERLINK(\"http://x\")")
    cli("issue", "--checkpoint", "utilities")
    data = outbox(cli, "utilities")[0].read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
        assert "<f>" not in sheet_xml and "<hyperlink" not in sheet_xml
        assert not any(n.startswith("xl/worksheets/_rels") for n in archive.namelist())
    rows = read_returned(data, key_of(cli)).rows
    assert [rows[s.student_no].identity["姓名"] for s in students] == nasty
    assert rows["090000000"].remark == "=HYPERLINK(\"http://x\")"


def test_checkbox_xml_matches_xlsxwriters_documented_output(issued: Cli, tmp_path: Path) -> None:
    """The featurePropertyBag part and the checkbox cell style equal what bare insert_checkbox writes."""
    reference = tmp_path / "ref.xlsx"
    book = xlsxwriter.Workbook(str(reference))
    sheet = book.add_worksheet()
    sheet.insert_checkbox(0, 0, True)
    sheet.insert_checkbox(1, 0, False)
    book.close()

    def parts(data: bytes) -> tuple[str, list[str], str]:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bag = archive.read("xl/featurePropertyBag/featurePropertyBag.xml").decode()
            styles = archive.read("xl/styles.xml").decode()
            types = archive.read("[Content_Types].xml").decode()
        return bag, re.findall(r"<extLst><ext[^>]*xfpb[^>]*>.*?</extLst>", styles), types

    ref_bag, ref_ext, ref_types = parts(reference.read_bytes())
    bag, ext, types = parts(outbox(issued, "utilities")[0].read_bytes())
    assert bag == ref_bag
    assert ref_ext and set(ext) == set(ref_ext)  # the xfComplement extension on the checkbox styles
    assert "featurePropertyBag" in ref_types and "featurePropertyBag" in types


def test_checkbox_cells_are_booleans_with_list_validation(issued: Cli) -> None:
    """Where the checkbox feature is unknown the cells are TRUE/FALSE booleans with a list to choose from: TRUE,
    FALSE and the manual's two other statuses."""
    data = outbox(issued, "utilities")[0].read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert re.search(r'<c r="K5" s="\d+" t="b"><v>0</v></c>', xml)
    assert '<formula1>"TRUE,FALSE,未通过,可办可不办"</formula1>' in xml
    # No protection: Excel cannot sort a protected sheet's locked cells, and staff then sorted a selection.
    assert "<sheetProtection" not in xml and "<autoFilter " in xml and "<pane " in xml
    assert 'orientation="landscape"' in xml and 'paperSize="9"' in xml


def test_long_prerequisites_get_tall_rows_and_every_box_shows_true_or_false(issued: Cli) -> None:
    """Printed from LibreOffice, a wrapped 前置条件 used to run over the next rows and boxes showed 0 in some columns
    and FALSE in others: rows with a long 前置条件 now carry a height for every line, and every box has the same
    explicit TRUE/FALSE number format."""
    path = outbox(issued, "certificates")[0]
    book = openpyxl.load_workbook(path)
    sheet = book[MAIN_SHEET]
    header = next(r for r in range(1, 10) if sheet.cell(r, 1).value == "学号")
    prereq = next(c.column for c in sheet[header] if c.value == "前置条件")
    long_rows = 0
    for r in range(header + 1, sheet.max_row + 1):
        text = sheet.cell(r, prereq).value or ""
        if len(text) > 40:  # 40+ CJK characters wrap in a column at most 40 wide
            long_rows += 1
            height = sheet.row_dimensions[r].height
            assert height is not None and height >= 15 * 2, (r, text, height)
    assert long_rows >= 3
    formats = {sheet.cell(r, c).number_format for r in range(header + 1, sheet.max_row + 1)
               for c in range(prereq + 1, sheet.max_column + 1) if isinstance(sheet.cell(r, c).value, bool)}
    assert formats == {'"TRUE";"TRUE";"FALSE"'}


def test_issuing_checkpoint_by_checkpoint_on_two_workers_writes_what_one_process_writes(tmp_path: Path) -> None:
    """``plan_each`` on a forked pool (planned ahead while the workers build) gives the same workbooks, in the
    same order, as every plan built in this process; a checkpoint named twice is issued once."""
    from lixiao.sync.datafolder import open_folder, secret_key
    from lixiao.sync.issuing import issue_workbooks, plan_all, plan_each

    from .conftest import cohort_folder

    # 600 students on 4 checkpoints: over the 2,000 rows that make a pool
    pooled, single = cohort_folder(tmp_path / "pooled", 600), cohort_folder(tmp_path / "single", 600)
    codes = ["dorm", "college", "dorm", "utilities", "special"]
    folder = open_folder(pooled)
    plans = plan_each(folder, codes, None)
    assert len(plans) == 4
    done: list[tuple[int, int]] = []
    with_pool = issue_workbooks(folder, plans, lambda n, total, _name: done.append((n, total)), workers=2)
    folder.close()
    folder = open_folder(single)
    alone = issue_workbooks(folder, plan_all(folder, codes, None), workers=1)
    folder.close()
    assert len(with_pool) == len(alone) > 4  # college is one workbook per college
    assert [(i.checkpoint, i.scope, i.generation, i.students) for i in with_pool] == \
        [(i.checkpoint, i.scope, i.generation, i.students) for i in alone]
    for mine, theirs in zip(with_pool, alone, strict=True):
        a, b = read_returned(mine.path.read_bytes(), secret_key(pooled)), read_returned(theirs.path.read_bytes())
        assert a.token.status == "valid" and a.token.payload and a.token.payload["generation"] == 1
        assert {n: (r.identity, r.marks) for n, r in a.rows.items()} == \
            {n: (r.identity, r.marks) for n, r in b.rows.items()}
        assert len(a.waivers) == len(b.waivers)
    assert done[-1] == (4, 4) and all(total == 4 for _, total in done)


@pytest.mark.parametrize(("formula", "cached", "expected"), [
    ("TRUE()", "1", Status.PASSED), ("FALSE()", "0", Status.PENDING), ("TRUE()", "TRUE", Status.PASSED),
    ("TRUE()", "0", None), ("FALSE()", "1", None), ("=TRUE()", "FALSE", None),
])
def test_a_boolean_formula_must_agree_with_its_saved_value(formula: str, cached: str, expected: Status | None) -> None:
    """LibreOffice saves a ticked box as TRUE() with the value 1; a TRUE() saved as 0 (or FALSE() as 1) was edited
    by hand, and what Excel shows (the saved value) differs from the formula: the cell is refused, not guessed."""
    from lixiao.workbooks.cells import Sheet

    status, reason = Sheet("办理", [[True]], {"A1": (formula, cached)}).status(0, 0, True)
    assert status is expected
    assert (reason == "") == (expected is not None)
