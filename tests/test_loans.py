"""National loans held at two lenders (manual §2.1-1: 校本部 10534 and 潇湘 12649, "应全部确认完"): the roster names
them, each lender's confirmation is recorded, and the step passes only when every lender has confirmed."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from lixiao.core.loans import parse_lenders
from lixiao.workbooks.roster import build_roster, roster_row

from .conftest import ROSTER, Cli, drop, edit, make_id, make_student, outbox, rows, sync

BOTH = make_student("0803010106", name="欧阳两贷", id_card=make_id(106), national_loan=True,
                    lenders=("10534", "12649"))


@pytest.mark.parametrize(("text", "codes"), [
    ("10534、12649", ("10534", "12649")), ("校本部+潇湘", ("10534", "12649")), ("12649, 10534", ("10534", "12649")),
    ("潇湘", ("12649",)), ("", ()), ("农行", None), ("1053", None),
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
