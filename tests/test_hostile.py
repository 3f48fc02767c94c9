"""The hostile and malformed corpus, built by code: each file gets its own reason and changes no status."""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from lixiao.workbooks.sandbox import parse_untrusted

from .conftest import Cli, drop, edit, key_of, outbox, rows, set_settings, statuses, sync
from .hostile_corpus import CORPUS, cases, with_member


@pytest.mark.parametrize(("name", "builder", "code"), CORPUS, ids=[c[0] for c in cases()])
def test_hostile_file_is_rejected_with_its_own_reason(issued: Cli, name: str, builder: Callable[[bytes], bytes],
                                                     code: str) -> None:
    """Each hostile or malformed file is refused as a whole with its reason code; no status changes."""
    set_settings(issued.data, "sync", incomplete_after_minutes=0)  # an empty or cut file is not waited for
    workbook = outbox(issued, "utilities")[0].read_bytes()
    path = drop(issued, "bad.xlsx", builder(workbook))
    past = time.time() - 600
    os.utime(path, (past, past))
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith(code + "："), item
    assert statuses(issued) == {}
    assert (issued.data / "rejected" / "bad.xlsx.说明.txt").read_text("utf-8").startswith("文件：bad.xlsx")


def test_every_corpus_case_has_a_distinct_code() -> None:
    """The reason codes name the problem: different kinds of file never share one vague code."""
    by_code: dict[str, list[str]] = {}
    for name, _, code in cases():
        by_code.setdefault(code, []).append(name)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert set(shared) <= {"xml_dtd", "zip_bomb", "far_cell"}  # variants of one attack share its code


@pytest.mark.parametrize(("fault", "outcome"), [
    ("parse:abort", "parser_crashed"),
    pytest.param("parse:hang", "timeout", marks=pytest.mark.slow),
    pytest.param("parse:memory", "parser_crashed", marks=pytest.mark.slow),
])
def test_a_parser_that_crashes_hangs_or_exhausts_memory_is_contained(issued: Cli, monkeypatch: pytest.MonkeyPatch,
                                                                      fault: str, outcome: str) -> None:
    """The child process dies or is killed; the caller gets a reason, and the file is quarantined."""
    monkeypatch.setenv("LIXIAO_FAULT", fault)
    monkeypatch.setenv("LIXIAO_PARSE_TIMEOUT", "5")
    data = outbox(issued, "utilities")[0].read_bytes()
    result = parse_untrusted(data, key_of(issued))
    assert not result.ok and result.code == outcome
    drop(issued, "q.xlsx", data)
    [item] = sync(issued)["files"]
    assert item["outcome"] == "quarantined" and statuses(issued) == {}


def test_token_copied_into_another_offices_workbook_is_rejected(issued: Cli) -> None:
    """A valid token moved into a different workbook does not match its content: token_mismatch."""
    utilities = outbox(issued, "utilities")[0].read_bytes()
    dorm = edit(outbox(issued, "dorm")[0], {("0803010103", "清理宿舍物品"): True})
    source = zipfile.ZipFile(io.BytesIO(utilities))
    forged = dorm
    for part in ("docProps/custom.xml",):
        forged = with_member(forged, part, source.read(part))
    book = openpyxl.load_workbook(io.BytesIO(forged))
    book["_lixiao"]["A2"] = openpyxl.load_workbook(io.BytesIO(utilities))["_lixiao"]["A2"].value
    book["_lixiao"]["A3"] = openpyxl.load_workbook(io.BytesIO(utilities))["_lixiao"]["A3"].value
    buffer = io.BytesIO()
    book.save(buffer)
    drop(issued, "forged.xlsx", buffer.getvalue())
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("token_mismatch：")
    assert statuses(issued) == {}


def retyped(issued: Cli, student_no: object) -> bytes:
    """The utilities workbook with 0803010103's 学号 cell retyped as ``student_no`` and its box ticked."""
    book = openpyxl.load_workbook(outbox(issued, "utilities")[0])
    ws = book["办理"]
    for r in range(5, ws.max_row + 1):
        if ws.cell(r, 1).value == "0803010103":
            ws.cell(r, 1).value = student_no
            ws.cell(r, 11).value = True  # 清理电费, after 前置条件 and 离校进度
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_full_width_and_zero_width_student_numbers_still_match(issued: Cli) -> None:
    """A 学号 retyped with full-width digits or a zero-width space is the same student."""
    drop(issued, "fw.xlsx", retyped(issued, "０８０３０１０１０３\u200b"))
    [item] = sync(issued)["files"]
    assert item["applied"] == 1 and statuses(issued)[("0803010103", "electricity")][0] == "passed"


def test_number_typed_student_number_changes_nothing(issued: Cli) -> None:
    """A 学号 that Excel turned into a number (leading zero lost) is an unknown row, reported."""
    drop(issued, "num.xlsx", retyped(issued, 803010103))
    [item] = sync(issued)["files"]
    assert item["applied"] == 0 and statuses(issued) == {}
    assert any("803010103 不在签发的名单中" in r for r in item["reasons"])


def test_long_remark_is_cut_and_reported(issued: Cli) -> None:
    """A remark longer than Excel allows in a cell (40,000 characters) is kept to 500; the receipt says so."""
    text = "".join(random.Random(1).choice("离校手续已办理完毕请核对") for _ in range(40_000))
    data = edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): True, ("0803010103", "备注"): text})
    drop(issued, "long.xlsx", data)
    [item] = sync(issued)["files"]
    assert item["applied"] == 1
    [(remark,)] = rows(issued, "SELECT remark FROM statuses WHERE student_no = '0803010103'")
    assert remark == text[:500]
    assert any("备注超过 500 字" in r for r in item["reasons"])


def test_deleted_and_inserted_rows_are_reported(issued: Cli) -> None:
    """Structure tampering: a deleted student row and an inserted stranger change nothing for them."""
    path = outbox(issued, "utilities")[0]
    book = openpyxl.load_workbook(path)
    ws = book["办理"]
    ws.delete_rows(6)
    ws.append(["0999000001", "陌生人", "男"] + [""] * 6 + [True])
    buffer = io.BytesIO()
    book.save(buffer)
    drop(issued, "t.xlsx", buffer.getvalue())
    [item] = sync(issued)["files"]
    text = " ".join(item["reasons"])
    assert "不见了" in text and "0999000001 不在签发的名单中" in text and "学生名单与签发时不同" in text
    assert statuses(issued) == {}


@pytest.mark.slow
def test_corpus_builders_make_distinct_files(issued: Cli, tmp_path: Path) -> None:
    """Sanity: the builders produce different bytes (no case silently tests another)."""
    workbook = outbox(issued, "utilities")[0].read_bytes()
    digests = {name: hash(builder(workbook)) for name, builder, _ in cases() if name != "empty"}
    assert len(set(digests.values())) == len(digests)


@pytest.mark.parametrize(("xml", "found"), [
    (b'<row r="7" spans="1:5"><c r="E7" s="2"><v>1</v></c></row>', ""),
    (b'<row r="7"><c r="XFD1048576"><v>1</v></c></row>', "在 XFD1048576 有内容"),
    (b'<row\nr="12345678"><c\tr="A12345678"/></row>', "的第 12345678 行有内容"),  # any whitespace, 8 digits
    (b'<c r="ZZ199999"/><c r="AAA1"/>', "在 AAA1 有内容"),  # ZZ and 199,999 are the limits, AAA is beyond
    (b'<dataValidation error="TRUE" header="ABCDEF"/><pageSetup footer="1234567"/>', ""),  # other attributes
    (b'<c r="A1" t="inlineStr"><is><t>typed r="XFD999999" here</t></is></c>', ""),  # text between tags
    (b'<row r="7"><c r="xfd1048576"><v>1</v></c></row>', "在 XFD1048576 有内容"),  # calamine reads lower case
    (b"<row r='7'><c r='A900000'><v>1</v></c></row>", "在 A900000 有内容"),  # single quotes
    (b'<row r="7"><c r = "A900000"><v>1</v></c></row>', "在 A900000 有内容"),  # a spaced "="
    (b'<row r="7"><c x=">" r="A900000"><v>1</v></c></row>', "在 A900000 有内容"),  # a ">" inside a value
])
def test_far_references_are_found_and_nothing_else(xml: bytes, found: str) -> None:
    """Only an r attribute beyond ZZ or row 200,000 is a far cell, in whatever whitespace or length."""
    from lixiao.workbooks.sniff import _far_reference

    assert _far_reference(xml) == found


def _sheet(cells: bytes) -> bytes:
    return b'<worksheet xmlns:foo="urn:x"><sheetData><row r="5">' + cells + b"</row></sheetData></worksheet>"


@pytest.mark.parametrize(("cells", "formulas", "errors"), [
    (b'<c r="J5" s="9" t="n"><f aca="false">TRUE()</f><v>1</v></c><c r="K5" s="10"/>',  # LibreOffice
     {"J5": ("TRUE()", "1")}, {}),
    (b'<c r="B5"><f>SUM(1)</f><v>1</v></c><c r="C5"><f>TRUE()</f></c><c\tr="D5"><f/></c>',
     {"B5": ("SUM(1)", "1"), "C5": ("TRUE()", None), "D5": ("", None)}, {}),
    (b'<c r="G5"><f>&quot;a&amp;b&quot;</f><v></v></c><c r="H5" t="e"><v>#N/A</v></c>',
     {"G5": ('"a&b"', "")}, {"H5": "#N/A"}),
    # a comment inside a cell naming the next one: the formula is J5's, J6 stays a FALSE box
    (b'<c r="J5" s="8" t="b"><!-- r="J6"--><f>TRUE()</f><v>0</v></c><c r="J6" t="b"><v>0</v></c>',
     {"J5": ("TRUE()", "0")}, {}),
    (b'<c r="J5" foo:x=">"><f>D5</f><v>1</v></c>', {"J5": ("D5", "1")}, {}),  # a ">" inside a value
    (b'<c r="A5"/><c><f>D5</f><v>1</v></c>', {"B5": ("D5", "1")}, {}),  # no r: the cell after A5
    (b'<c r="j5"><f>D5</f><v>1</v></c>', {"J5": ("D5", "1")}, {}),  # lower case, as calamine reads it
    (b"<c r='J5'><f>D5</f><v>1</v></c><c r='E5' t='e'><v>#REF!</v></c>", {"J5": ("D5", "1")}, {"E5": "#REF!"}),
    (b'<c foo:r="J6" r="J5"><f>D5</f></c>', {"J5": ("D5", None)}, {}),  # another attribute ending in r
    (b'<c foo:x=\' r="J6"\' r="J5"><f>D5</f></c>', {"J5": ("D5", None)}, {}),
    (b'<c r = "J5"><f>D5</f></c>', {"J5": ("D5", None)}, {}),
])
def test_formula_and_error_cells_belong_to_the_cell_they_sit_in(cells: bytes, formulas: dict[str, object],
                                                                errors: dict[str, str]) -> None:
    """However a cell is written, its formula and error value are its own: never another cell's, never lost."""
    from lixiao.workbooks.sheetxml import _parsed, sheet_cells

    xml = _sheet(cells)
    assert sheet_cells(xml) == (formulas, errors)
    assert _parsed(xml) == (formulas, errors)  # the parser the odd cases go to agrees on the plain ones too


def test_a_sheet_whose_xml_is_broken_is_unreadable_not_unticked() -> None:
    """Odd XML the plain scan leaves to the parser, and that the parser cannot read, refuses the file."""
    from lixiao.workbooks.returned import ReadError
    from lixiao.workbooks.sheetxml import sheet_cells

    with pytest.raises(ReadError, match="XML 已损坏"):
        sheet_cells(b"<worksheet><sheetData><row r='1'><c r='A1'><f>D5</f></row></worksheet>")


@pytest.mark.slow  # ≈ 10 s: the whole corpus twice
def test_the_daemons_parser_server_classifies_the_corpus_as_a_one_shot_sync_does(issued: Cli) -> None:
    """Every hostile file gets the same verdict through the parser server a multi-threaded ``lixiao watch`` uses
    as through the child a single-threaded ``lixiao sync`` forks itself, and the server stays up for the next."""
    import threading

    from lixiao.workbooks import sandbox

    key = key_of(issued)
    workbook = outbox(issued, "utilities")[0].read_bytes()
    files = [builder(workbook) for _name, builder, _code in cases()]
    own_fork = [parse_untrusted(data, key) for data in files]
    assert sandbox.start_server()
    release = threading.Event()
    observer = threading.Thread(target=release.wait)  # as the daemon's observer
    observer.start()
    try:
        server = sandbox._SERVER._process
        through_server = [parse_untrusted(data, key) for data in files]
        assert sandbox._SERVER._process is server and server is not None and server.poll() is None
        assert parse_untrusted(workbook, key).ok  # and it still parses a good file
    finally:
        release.set()
        observer.join()
        sandbox._SERVER._stop()
    assert [(r.ok, r.code) for r in through_server] == [(r.ok, r.code) for r in own_fork]
    refused = {name: r.code for (name, _builder, _code), r in zip(cases(), own_fork, strict=True) if not r.ok}
    assert len(refused) > len(files) // 2
    assert all(refused[name] == code for name, _builder, code in cases() if name in refused), refused
