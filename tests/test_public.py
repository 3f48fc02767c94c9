"""The page safe to publish (issue 24): a random 查询码 per student is its secret, not the ID's tail; the record shows
the date, the student's own desks, the feeds' amounts, a failed step's reason and a lifted restriction; codes are
rotated one at a time, printed on per-class slips, and the page follows every report refresh once opted in."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from lixiao.core.feeds.exports import finance_amount, finance_outcome, library_amounts, library_outcome
from lixiao.core.manual.identity import mask_id_card
from lixiao.core.manual.model import Status
from lixiao.core.storage.querycodes import ALPHABET, new_code, normalize_code
from lixiao.sync.datafolder import open_folder
from lixiao.sync.live.batch import refresh_reports
from lixiao.workbooks.roster import build_roster, roster_row

from .conftest import ROSTER, Cli, rows
from .publicpage import clear_hits, open_record, shown_steps

ITERATIONS = "1000"


def _codes(cli: Cli) -> dict[str, str]:
    return dict(rows(cli, "SELECT student_no, code FROM query_codes"))


def _public(cli: Cli) -> Path:
    return cli.data / "reports" / "public"


@pytest.fixture
def published(cli: Cli) -> Cli:
    """The five-student folder with feeds, a failed step with its reason and a waiver, published."""
    (cli.data / "library.csv").write_text("学号,借阅册数,欠费\n0803010103,2,1.5\n0803010104,0,0\n", "utf-8")
    (cli.data / "finance.csv").write_text("学号,欠费金额\n0803010103,3.2\n0803010105,120\n", "utf-8")
    for args in (("feed", "library", str(cli.data / "library.csv")), ("feed", "finance", str(cli.data / "finance.csv")),
                 ("set", "0803010104", "electricity", "failed", "--remark", "电费未缴清 35 元"),
                 ("waive", "0803010105", "pay_arrears", "--reason", "欠费缓交", "--evidence", "缓交证明2026-031"),
                 ("report", "--public", "--iterations", ITERATIONS)):
        result = cli(*args)
        assert result.exit_code in (0, 1), result.output
    return cli


def test_a_code_is_50_random_bits_in_characters_that_cannot_be_confused() -> None:
    """10 characters of Crockford's base32 (no I, L, O, U) grouped 4-4-2; typing ignores case, spaces and hyphens
    and reads O as 0, I and L as 1."""
    assert len(ALPHABET) == 32 and not set("ILOU") & set(ALPHABET)
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{2}", code)
        assert normalize_code(code.lower().replace("-", " ")) == code.replace("-", "")
    assert normalize_code(" 7kq4-m9xd-2r ") == "7KQ4M9XD2R" and normalize_code("oIl0") == "0110"


def test_the_feeds_remarks_read_back_as_their_amounts() -> None:
    """library_amounts / finance_amount give back exactly what library_outcome / finance_outcome were given, and
    nothing for a remark no feed wrote."""
    for books, fines in ((0, "0.00"), (3, "0.00"), (0, "1.50"), (2, "12.30")):
        status, remark = library_outcome(Decimal(books), Decimal(fines))
        assert library_amounts(status, remark) == (str(books), fines)
    for owed in ("0.00", "3.20"):
        assert finance_amount(*finance_outcome(Decimal(owed))) == owed
    assert library_amounts(Status.FAILED, "学生不在图书馆导出中") is None
    assert finance_amount(Status.FAILED, "没有导出") is None


def test_the_code_opens_the_record_and_the_id_tail_opens_nothing(published: Cli) -> None:
    """学号 + 查询码 (typed in lower case, without hyphens) opens that student's record; 学号 + the last 6 of the
    ID, another student's code or a wrong code opens nothing."""
    codes = _codes(published)
    assert sorted(codes) == sorted(s.student_no for s in ROSTER)
    for student in ROSTER:
        record = open_record(_public(published), student.student_no, codes[student.student_no].lower().replace("-", ""))
        assert record is not None and record["name"] == student.name and record["no"] == student.student_no
        assert open_record(_public(published), student.student_no, student.id_card[-6:]) is None
    first, second = ROSTER[0].student_no, ROSTER[1].student_no
    assert open_record(_public(published), first, codes[second]) is None
    assert open_record(_public(published), first, "0000-0000-00") is None


def test_the_record_shows_what_the_manual_shows_a_student(published: Cli) -> None:
    """The college's own desk names, 借阅册数 and 欠款, 欠费金额, a failed step's reason, a lifted restriction with
    its reason, and the date the data stand at."""
    codes, public = _codes(published), _public(published)
    settings = (public / "settings.js").read_text("utf-8")
    stamp = re.search(r'"asof":"(\d{4}-\d\d-\d\d \d\d:\d\d)"', settings)
    assert stamp and f"数据截至 {stamp.group(1)}" in (public / "离校查询.html").read_text("utf-8")
    owing = open_record(public, "0803010103", codes["0803010103"])
    assert owing is not None
    rows = shown_steps(public, owing)
    assert ("机电工程学院离校点", "转出党团组织关系", "未办理", "") in rows
    assert ("图书馆离校点", "归还图书", "未通过", "借阅册数 2 册，欠款 1.50 元") in rows
    assert ("财务处离校点", "缴还欠款", "未通过", "欠费金额 3.20 元") in rows
    assert "学院离校点" not in {desk for desk, *_ in rows}
    clear = open_record(public, "0803010104", codes["0803010104"])
    assert clear is not None
    rows = shown_steps(public, clear)
    assert ("图书馆离校点", "归还图书", "已通过", "借阅册数 0 册，欠款 0.00 元") in rows
    assert ("水电通信中心离校点", "清理电费", "未通过", "电费未缴清 35 元") in rows
    lifted = open_record(public, "0803010105", codes["0803010105"])
    assert lifted is not None
    assert ("财务处离校点", "缴还欠款", "未通过（已解除限制）", "已解除限制：欠费缓交") in shown_steps(public, lifted)
    other = open_record(public, "0801020227", codes["0801020227"])
    assert other is not None and other["titles"]["学院离校点"] == "能源与安全工程学院离校点"


def test_the_record_says_what_blocks_a_step_as_lixiao_status_does(published: Cli) -> None:
    """Each blocked step of a record names the same missing steps, at the student's own desks, as status --json."""
    public, codes = _public(published), _codes(published)
    for student in ROSTER:
        record = open_record(public, student.student_no, codes[student.student_no])
        assert record is not None
        steps = json.loads((public / "settings.js").read_text("utf-8").split("=", 1)[1].strip().rstrip(";"))["steps"]
        shown = {steps[b[0]][1]: [f"{record['titles'].get(steps[i][0], steps[i][0])}：{steps[i][1]}" for i in b[1]]
                 for b in record["blocked"]}
        status = published.json("status", student.student_no)
        assert shown == {b["step_name"]: b["missing"] for b in status["blocked"]}
        assert record["complete"] == int(status["complete"])


def test_rotating_a_code_retires_the_old_one_audited_without_the_code(published: Cli) -> None:
    """codes rotate prints the new code once; the page is rebuilt, the old code opens nothing and the new one opens
    the record; the audit chain has the event (without the code) and verify passes."""
    old = _codes(published)["0803010103"]
    result = published("codes", "rotate", "0803010103", "--operator", "辅导员王老师")
    assert result.exit_code == 0, result.output
    new = _codes(published)["0803010103"]
    assert new != old and result.output.count(new) == 1 and "旧码已失效" in result.output
    assert open_record(_public(published), "0803010103", old) is None
    assert open_record(_public(published), "0803010103", new) is not None
    events = rows(published, "SELECT decision, operator, detail, old, new FROM audit WHERE kind = 'query_code' "
                             "AND student_no = '0803010103'")
    assert [e[:2] for e in events] == [("rotated", "辅导员王老师")]
    every = "".join("".join(map(str, r)) for r in rows(published, "SELECT * FROM audit"))
    assert new not in every and new.replace("-", "") not in every and old not in every
    assert published("verify").exit_code == 0


def test_slips_one_page_per_class_each_student_once_escaped_and_no_id(cli: Cli, tmp_path: Path) -> None:
    """codes slips writes one page per class with each of its students once (name escaped, code, 学号), no ID
    number in any form; it refuses reports/public/ and an unknown class."""
    roster = tmp_path / "renamed.xlsx"
    roster.write_bytes(build_roster([roster_row(replace(s, name="<b>沈&睿</b>") if s.student_no == "0803010104" else s)
                                     for s in ROSTER]))
    assert cli("students", "import", str(roster)).exit_code == 0
    out = tmp_path / "slips"
    result = cli("codes", "slips", str(out), "--url", "https://stu.example.edu.cn/lx/")
    assert result.exit_code == 0, result.output
    codes = _codes(cli)
    pages = sorted(out.glob("*.html"))
    classes = {(s.college, s.class_name) for s in ROSTER}
    assert len(pages) == len(classes)
    for page in pages:
        text = page.read_text("utf-8")
        assert page.stat().st_mode & 0o077 == 0
        members = [s for s in ROSTER if s.class_name in page.name]
        assert members and "https://stu.example.edu.cn/lx/" in text
        for student in ROSTER:
            expected = 1 if student in members else 0
            assert text.count(codes[student.student_no]) == expected and text.count(student.student_no) == expected
            assert student.id_card not in text and mask_id_card(student.id_card) not in text
            assert student.id_card[-6:] not in text and student.id_card[:6] not in text
    text = "".join(p.read_text("utf-8") for p in pages)
    assert "&lt;b&gt;沈&amp;睿&lt;/b&gt;" in text and "<b>沈" not in text
    one = cli("codes", "slips", str(tmp_path / "one"), "--class", "08安全2班")
    assert one.exit_code == 0 and len(list((tmp_path / "one").glob("*.html"))) == 1
    assert cli("codes", "slips", str(tmp_path / "none"), "--class", "99无此班").exit_code == 2
    refused = cli("codes", "slips", str(cli.data / "reports" / "public" / "码"))
    assert refused.exit_code == 2 and "发布" in refused.output


def test_the_published_files_hold_nothing_in_clear(published: Cli) -> None:
    """No 查询码 (grouped or not), name, 学号, 身份证号 (whole, masked or its last 6), or class of any student."""
    codes = _codes(published)
    for student in ROSTER:
        tokens = {"学号": student.student_no, "身份证号": student.id_card, "后六位": student.id_card[-6:],
                  "查询码": codes[student.student_no], "查询码（连写）": codes[student.student_no].replace("-", "")}
        phrases = {"姓名": student.name, "班级": student.class_name, "掩码": mask_id_card(student.id_card)}
        assert clear_hits(_public(published), tokens, phrases) == []


def test_the_check_finds_a_value_planted_in_clear(published: Cli, tmp_path: Path) -> None:
    """The check is not blind: a 学号, a name written as JSON escapes, an ID tail in HTML and a code planted in
    a copy of the published files are each found."""
    public = tmp_path / "public"
    shutil.copytree(_public(published), public)
    student, code = ROSTER[2], _codes(published)[ROSTER[2].student_no]
    name = "".join(f"\\u{ord(c):04x}" for c in student.name)
    shard = next((public / "r").glob("*.js"))
    shard.write_text(shard.read_text("utf-8") + f'window.X={{"no":"{student.student_no}","n":"{name}"}};\n', "utf-8")
    page = public / "离校查询.html"
    page.write_text(page.read_text("utf-8") + f"<p>&#x{ord(student.id_card[-6]):x};{student.id_card[-5:]}</p>"
                    f"<p>{code}</p>", "utf-8")
    tokens = {"学号": student.student_no, "后六位": student.id_card[-6:], "查询码": code}
    assert clear_hits(public, tokens, {"姓名": student.name}) == [
        f"学号: {student.student_no}", f"后六位: {student.id_card[-6:]}", f"查询码: {code}", f"姓名: {student.name}"]


def test_every_report_refresh_rebuilds_the_page_once_opted_in(cli: Cli) -> None:
    """refresh_reports (lixiao sync, the daemon after a batch) writes no page until report --public opted in, then
    rebuilds it with the current statuses (keys already derived are reused); --no-public stops it."""
    folder = open_folder(cli.data)
    try:
        refresh_reports(folder)
    finally:
        folder.close()
    assert not _public(cli).exists()
    assert cli("report", "--public", "--iterations", ITERATIONS).exit_code == 0
    assert cli("set", "0803010103", "electricity", "failed", "--remark", "电费未缴清").exit_code == 0
    folder = open_folder(cli.data)
    try:
        refresh_reports(folder)
    finally:
        folder.close()
    record = open_record(_public(cli), "0803010103", _codes(cli)["0803010103"])
    assert record is not None and "电费未缴清" in [note for *_, note in shown_steps(_public(cli), record)]
    assert "本次派生密钥 0 个" in cli("report").output
    result = cli("report", "--no-public")
    assert result.exit_code == 0 and "不再随报表更新" in result.output
    before = (_public(cli) / "settings.js").stat().st_mtime_ns
    assert cli("report").exit_code == 0
    assert (_public(cli) / "settings.js").stat().st_mtime_ns == before
