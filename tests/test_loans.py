"""National loans held at two lenders (manual §2.1-1: 校本部 10534 and 潇湘 12649, "应全部确认完"): the roster names
them, each lender's confirmation is recorded, and the step passes only when every lender has confirmed."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from lixiao.core.manual.loans import parse_lenders
from lixiao.core.manual.roster import COLUMNS
from lixiao.workbooks.roster import build_roster, roster_row

from .conftest import ROSTER, Cli, drop, edit, make_id, make_student, outbox, rows, sync

BOTH = make_student("0803010106", name="欧阳两贷", id_card=make_id(106), national_loan=True,
                    lenders=("10534", "12649"))


@pytest.mark.parametrize(("text", "codes"), [
    ("10534、12649", ("10534", "12649")), ("校本部+潇湘", ("10534", "12649")), ("12649, 10534", ("10534", "12649")),
    ("潇湘", ("12649",)), ("", ()), ("农行", None), ("1053", None), ("99999", None),
])
def test_lender_cells_name_codes_or_the_manuals_names(text: str, codes: tuple[str, ...] | None) -> None:
    """A roster or feed cell names lenders by code or by the manual's names; anything else is refused."""
    assert parse_lenders(text) == codes


@pytest.fixture
def two_lenders(cli: Cli, tmp_path: Path) -> Cli:
    """The five-student folder plus 欧阳两贷, whose national loan is at both 10534 and 12649."""
    roster = tmp_path / "名单.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in [*ROSTER, BOTH]]))
    result = cli("students", "import", str(roster))
    assert result.exit_code == 0, result.output
    return cli


def loans_file(tmp_path: Path, name: str, lines: list[str], header: str = "身份证号,经办单位") -> Path:
    """A loan confirmation export."""
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(f"{line}\n" for line in lines), "utf-8")
    return path


def loan_step(cli: Cli, no: str) -> tuple[str, str]:
    """(status, remark) of one student's 国家助学贷款还款确认."""
    step = next(s for s in cli.json("status", no)["steps"] if s["step"] == "national_loan")
    return step["status"], step["remark"]


def test_the_step_passes_only_when_both_lenders_confirmed(two_lenders: Cli, tmp_path: Path) -> None:
    """校本部's confirmation alone leaves the step 未办理 with 尚缺 潇湘(12649) (and the feed says 部分确认); 潇湘's
    (through --lender) passes it; a student with one lender still passes with one confirmation."""
    cli = two_lenders
    first = loans_file(tmp_path, "校本部.csv", [f"{BOTH.id_card},10534", f"{ROSTER[1].id_card},10534"])
    result = cli("feed", "loans", str(first), "--loan", "national")
    assert result.exit_code == 0, result.output
    assert "部分确认" in result.output and "尚缺：潇湘(12649)" in result.output
    assert loan_step(cli, BOTH.student_no) == ("pending", "已确认：校本部(10534)；尚缺：潇湘(12649)")
    assert loan_step(cli, ROSTER[1].student_no)[0] == "passed"  # 沈睿: one lender (是), one confirmation
    again = cli("feed", "loans", str(first), "--loan", "national")
    assert again.exit_code == 0 and loan_step(cli, BOTH.student_no)[0] == "pending"
    second = loans_file(tmp_path, "潇湘.csv", [BOTH.id_card], header="身份证号")
    assert cli("feed", "loans", str(second), "--loan", "national", "--lender", "12649").exit_code == 0
    assert loan_step(cli, BOTH.student_no) == ("passed", "贷款系统已确认：校本部(10534)、潇湘(12649)")
    confirmed = rows(cli, f"SELECT lender FROM loan_confirmations WHERE student_no = '{BOTH.student_no}' "
                          "ORDER BY lender")
    assert confirmed == [("10534",), ("12649",)]


def test_a_confirmation_without_its_lender_is_refused(two_lenders: Cli, tmp_path: Path) -> None:
    """For a two-lender student a row naming no lender (or another one) cannot count: refused with the reason."""
    cli = two_lenders
    plain = loans_file(tmp_path, "无单位.csv", [BOTH.id_card], header="身份证号")
    result = cli("feed", "loans", str(plain), "--loan", "national")
    assert result.exit_code == 1 and "请写明是哪一处的确认" in result.output and "没有写明经办单位" in result.output
    assert loan_step(cli, BOTH.student_no)[0] == "pending"
    assert rows(cli, "SELECT count(*) FROM loan_confirmations") == [(0,)]


def test_a_tick_or_set_is_refused_until_every_lender_confirmed(two_lenders: Cli, tmp_path: Path) -> None:
    """The college workbook shows which lenders must confirm; ticking the step (or `lixiao set`) is refused while
    one is missing, and accepted once both confirmed."""
    cli = two_lenders
    assert cli("issue", "--checkpoint", "college").exit_code == 0
    book = next(p for p in outbox(cli, "college") if "机电工程学院" in p.name)
    sheet = openpyxl.load_workbook(book)["办理"]
    row = next(r for r in sheet.iter_rows(values_only=True) if r[0] == BOTH.student_no)
    assert "国家助学贷款在 校本部(10534)、潇湘(12649) 两处，均需确认" in row
    drop(cli, "tick.xlsx", edit(book, {(BOTH.student_no, "国家助学贷款还款确认"): True}))
    [item] = sync(cli)["files"]
    assert (item["applied"], item["refused"]) == (0, 1)
    [(reason,)] = rows(cli, "SELECT reason FROM refused_ticks")
    assert "应全部确认完" in reason and "尚缺 校本部(10534)、潇湘(12649)" in reason
    refused = cli("set", BOTH.student_no, "national_loan", "passed")
    assert refused.exit_code == 1 and "应全部确认完" in refused.output
    both = loans_file(tmp_path, "两处.csv", [f"{BOTH.id_card},10534", f"{BOTH.id_card},潇湘"])
    assert cli("feed", "loans", str(both), "--loan", "national").exit_code == 0
    assert loan_step(cli, BOTH.student_no)[0] == "passed"


# -- found by the second adversarial pass ------------------------------------------------------------------------


def test_optional_is_refused_like_a_tick_while_a_lender_is_missing(two_lenders: Cli) -> None:
    """○ (可办可不办, which counts as done) on the loan step cannot skip the lenders' confirmations."""
    refused = two_lenders("set", BOTH.student_no, "national_loan", "optional")
    assert refused.exit_code == 1 and "应全部确认完" in refused.output


def test_a_named_single_lender_must_be_the_one_that_confirms(cli: Cli, tmp_path: Path) -> None:
    """A roster naming one lender (10534): a confirmation from 12649 is refused; one without a lender column
    counts for 10534 and is recorded; a tick before it is refused."""
    one = make_student("0803010107", name="单贷", id_card=make_id(107), national_loan=True, lenders=("10534",))
    roster = tmp_path / "r.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in [*ROSTER, one]]))
    assert cli("students", "import", str(roster)).exit_code == 0
    assert cli("set", one.student_no, "national_loan", "passed").exit_code == 1
    wrong = loans_file(tmp_path, "w.csv", [f"{one.id_card},12649"])
    result = cli("feed", "loans", str(wrong), "--loan", "national")
    assert result.exit_code == 1 and "校本部(10534) 经办" in result.output
    assert loan_step(cli, one.student_no)[0] == "pending"
    plain = loans_file(tmp_path, "p.csv", [one.id_card], header="身份证号")
    assert cli("feed", "loans", str(plain), "--loan", "national").exit_code == 0
    assert loan_step(cli, one.student_no) == ("passed", "贷款系统已确认：校本部(10534)")
    assert rows(cli, f"SELECT lender FROM loan_confirmations WHERE student_no = '{one.student_no}'") == [("10534",)]


def test_a_roster_that_adds_a_lender_reopens_the_step(two_lenders: Cli, tmp_path: Path) -> None:
    """沈睿 passed with one confirmation; the roster then says his loan is at both lenders: the import reopens the
    step (未办理, 尚缺 the other) and says so; removing a lender again recomputes it."""
    cli = two_lenders
    shen = ROSTER[1]
    first = loans_file(tmp_path, "a.csv", [f"{shen.id_card},10534"])
    assert cli("feed", "loans", str(first), "--loan", "national").exit_code == 0
    assert loan_step(cli, shen.student_no)[0] == "passed"
    both = [s if s.student_no != shen.student_no else make_student(shen.student_no, name=shen.name, national_loan=True,
                                                                     lenders=("10534", "12649")) for s in ROSTER]
    roster = tmp_path / "r2.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in [*both, BOTH]]))
    result = cli("students", "import", str(roster))
    assert result.exit_code == 0 and "由已通过改为未办理" in result.output
    assert loan_step(cli, shen.student_no) == ("pending", "已确认：校本部(10534)；尚缺：潇湘(12649)")
    back = tmp_path / "r3.xlsx"
    back.write_bytes(build_roster([roster_row(s) for s in [*ROSTER, BOTH]]))
    assert cli("students", "import", str(back)).exit_code == 0
    assert loan_step(cli, shen.student_no) == ("pending", "")


def test_a_loans_row_whose_id_and_number_disagree_is_refused(two_lenders: Cli, tmp_path: Path) -> None:
    """学号 of one student with the 身份证号 of another (or of nobody) is refused, not matched to either."""
    mixed = loans_file(tmp_path, "m.csv", [f"{BOTH.student_no},{ROSTER[1].id_card},10534",
                                            f"{BOTH.student_no},430103199001011234,10534"],
                       header="学号,身份证号,经办单位")
    result = two_lenders("feed", "loans", str(mixed), "--loan", "national")
    assert result.exit_code == 1 and result.output.count("不是学生名单中的同一名学生") == 2
    assert rows(two_lenders, "SELECT count(*) FROM loan_confirmations") == [(0,)]


def test_a_partial_confirmation_is_not_counted_as_failed_and_keeps_an_office_status(two_lenders: Cli,
                                                                                      tmp_path: Path) -> None:
    """The summary counts a partial confirmation under 部分确认, not 未通过; a 未通过 the college recorded stays."""
    cli = two_lenders
    assert cli("set", BOTH.student_no, "national_loan", "failed", "--remark", "合同未交").exit_code == 0
    result = cli("feed", "loans", str(loans_file(tmp_path, "a.csv", [f"{BOTH.id_card},10534"])), "--loan", "national")
    assert "未通过 0" in result.output and "部分确认" in result.output
    assert loan_step(cli, BOTH.student_no) == ("failed", "合同未交")


def test_unknown_lender_codes_are_refused(cli: Cli, tmp_path: Path) -> None:
    """A lender code other than the manual's (a typo such as 10543) is refused at import, with the known ones."""
    typo = {**dict(zip(COLUMNS, roster_row(BOTH), strict=True)), "国家助学贷款": "10534、10543"}
    roster = tmp_path / "t.xlsx"
    roster.write_bytes(build_roster([tuple(typo[c] for c in COLUMNS)]))
    result = cli("students", "import", str(roster))
    assert result.exit_code == 1 and "10534、12649" in result.output
