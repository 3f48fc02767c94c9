"""External feeds set their steps: library and finance by 学号, loans by 身份证号 falling back to 学号."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from lixiao.core.feeds.exports import FeedError, finance_outcome, library_outcome, parse_feed
from lixiao.core.manual.model import Status

from .conftest import ROSTER, Cli


def test_library_outcome() -> None:
    """0 books and 0 fines pass; otherwise failed with the reason as remark."""
    assert library_outcome(Decimal(0), Decimal(0)) == (Status.PASSED, "")
    assert library_outcome(Decimal(2), Decimal("1.5")) == (Status.FAILED, "未还图书 2 册；图书馆欠费 1.50 元")


def test_finance_outcome() -> None:
    """Arrears fail 缴还欠款 with the amount."""
    assert finance_outcome(Decimal("1653")) == (Status.FAILED, "欠费 1653.00 元")


def test_loans_need_a_type() -> None:
    """Without a 贷款类型 column the coordinator must say which loan the list confirms."""
    with pytest.raises(FeedError, match="--loan national 或 --loan local"):
        parse_feed("loans", ["身份证号"], [])


def test_feed_columns_are_checked() -> None:
    """A library export without 欠费 is refused as a whole."""
    with pytest.raises(FeedError, match="library 数据缺少列：欠费"):
        parse_feed("library", ["学号", "借阅册数"], [])


def write(path: Path, text: str) -> Path:
    """Write a UTF-8 CSV and return its path."""
    path.write_text(text, "utf-8")
    return path


def test_cli_library_feed_sets_return_books(cli: Cli, tmp_path: Path) -> None:
    """Rows with books or fines fail with the reason; clean rows pass."""
    feed = write(tmp_path / "lib.csv", "学号,借阅册数,欠费\n0803010103,0,0\n0803010104,2,0\n")
    result = cli("feed", "library", str(feed))
    assert result.exit_code == 0, result.output
    assert "已通过 1，未通过 1" in result.output
    steps = {s["step"]: s for s in cli.json("status", "0803010104")["steps"]}
    assert (steps["return_books"]["status"], steps["return_books"]["remark"]) == ("failed", "未还图书 2 册")


def test_feed_turning_passed_into_failed_is_recorded(cli: Cli, tmp_path: Path) -> None:
    """A late fee turns 已通过 back into 未通过: listed in the output and audited as reverted."""
    cli("feed", "finance", str(write(tmp_path / "f1.csv", "学号,欠费金额\n0803010103,0\n")))
    result = cli("feed", "finance", str(write(tmp_path / "f2.csv", "学号,欠费金额\n0803010103,35.5\n")))
    assert "1 名学生由“已通过”变为“未通过”" in result.output
    events = [e for e in cli.json("history", "0803010103") if e["step"] == "pay_arrears"]
    assert [(e["old"], e["new"], e["decision"]) for e in events] == [("", "passed", "applied"),
                                                                    ("passed", "failed", "reverted")]


def test_same_feed_twice_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    """Applying an identical export again writes no new event."""
    feed = write(tmp_path / "f.csv", "学号,欠费金额\n0803010103,12\n")
    cli("feed", "finance", str(feed))
    before = len(cli.json("history", "0803010103"))
    result = cli("feed", "finance", str(feed))
    assert "未变 1" in result.output
    assert len(cli.json("history", "0803010103")) == before


def test_loans_match_by_id_card_then_student_no(cli: Cli, tmp_path: Path) -> None:
    """A row with the 身份证号 matches by it; a row with only 学号 falls back to 学号."""
    national = ROSTER[1]
    local = ROSTER[2]
    feed = write(tmp_path / "loans.csv",
                 f"身份证号,学号,贷款类型\n{national.id_card},,国家助学贷款\n,{local.student_no},生源地贷款\n")
    result = cli("feed", "loans", str(feed))
    assert result.exit_code == 0, result.output
    national_steps = {s["step"]: s["status"] for s in cli.json("status", national.student_no)["steps"]}
    local_steps = {s["step"]: s["status"] for s in cli.json("status", local.student_no)["steps"]}
    assert national_steps["national_loan"] == "passed"
    assert local_steps["local_loan"] == "passed"


def test_loan_for_student_without_the_flag_and_unknown_ids_are_refused(cli: Cli, tmp_path: Path) -> None:
    """A confirmed loan for a student the roster does not flag, and an unknown ID, are listed; exit 1."""
    plain = ROSTER[0]
    feed = write(tmp_path / "loans.csv", f"身份证号\n{plain.id_card}\n11010519491231002X\n")
    result = cli("feed", "loans", str(feed), "--loan", "national")
    assert result.exit_code == 1
    assert "在学生名单中没有该贷款标记" in result.output
    assert "找不到学生：第 3 行：110105********002X" in result.output


def test_students_missing_from_a_whole_school_export_are_listed(cli: Cli, tmp_path: Path) -> None:
    """A library export naming 2 of the 5 students lists the other 3 on screen and in a receipt file, leaves
    them 未办理 by default, and the report shows them under 数据源未覆盖的学生; a loan list never counts as a
    gap."""
    feed = write(tmp_path / "lib.csv", f"学号,借阅册数,欠费\n{ROSTER[0].student_no},0,0\n{ROSTER[1].student_no},0,0\n")
    result = cli("feed", "library", str(feed))
    assert result.exit_code == 0, result.output
    assert "3 名学生不在这份导出中：3 名仍为未办理" in result.output and ROSTER[4].student_no in result.output
    [receipt] = (cli.data / "receipts").glob("数据源-library-*.txt")
    assert all(s.student_no in receipt.read_text("utf-8") for s in ROSTER[2:])
    assert cli.json("status", ROSTER[2].student_no)["steps"][1]["status"] in ("pending",)
    assert cli("report").exit_code == 0
    page = (cli.data / "reports" / "index.html").read_text("utf-8")
    assert "数据源未覆盖的学生（3）" in page
    loans = write(tmp_path / "loans.csv", f"学号\n{ROSTER[1].student_no}\n")
    assert "不在导出中" not in cli("feed", "loans", str(loans), "--loan", "national").output


def test_a_partial_export_counts_what_actually_stays_pending(cli: Cli, tmp_path: Path) -> None:
    """A library export covering only part of the school counts as 未办理 only the left-out students whose step is
    still 未办理; those passed by an earlier export are said to keep their status, and the hint names the file,
    section and key of the setting with an example."""
    whole = "".join(f"{s.student_no},0,0\n" for s in ROSTER[:4])
    assert cli("feed", "library", str(write(tmp_path / "all.csv", "学号,借阅册数,欠费\n" + whole))).exit_code == 0
    part = write(tmp_path / "part.csv", f"学号,借阅册数,欠费\n{ROSTER[0].student_no},0,0\n")
    result = cli("feed", "library", str(part))
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "4 名学生不在这份导出中：1 名仍为未办理；3 名保持原来的状态（已通过 3 名" in flat
    assert "保持未办理" not in flat and "absent 可设为" not in flat
    assert "lixiao.toml" in flat and "[feeds]" in flat and 'absent = "passed"' in flat
    pending = result.output.split("名单见")[1]
    assert ROSTER[4].student_no in pending and ROSTER[1].student_no not in pending
    [receipt] = sorted((cli.data / "receipts").glob("数据源-library-*.txt"))[-1:]
    assert "3 名保持原来的状态" in receipt.read_text("utf-8")


def test_absent_students_can_be_recorded_as_failed(cli: Cli, tmp_path: Path) -> None:
    """With [feeds] absent = "failed" a student missing from the finance export is 未通过 with the reason; a
    wrong value is one clear line."""
    settings = cli.data / "lixiao.toml"
    settings.write_text(settings.read_text("utf-8") + '\n[feeds]\nabsent = "failed"\n', "utf-8")
    feed = write(tmp_path / "fin.csv", f"学号,欠费金额\n{ROSTER[0].student_no},0\n")
    result = cli("feed", "finance", str(feed))
    assert result.exit_code == 0 and "已按设置记为“未通过”" in result.output
    record = cli.json("status", ROSTER[1].student_no)
    [step] = [s for s in record["steps"] if s["step"] == "pay_arrears"]
    assert (step["status"], step["remark"]) == ("failed", "不在财务导出中（按设置记为未通过）")
    settings.write_text(settings.read_text("utf-8").replace('absent = "failed"', 'absent = "maybe"'), "utf-8")
    wrong = cli("feed", "finance", str(feed))
    assert wrong.exit_code == 2 and "[feeds] absent" in wrong.output
