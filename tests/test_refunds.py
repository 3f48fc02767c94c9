"""统计查询: 财务退费查询 (`lixiao refunds`, 退费查询.html, the Excel sheet) and 学生退费查询 (`lixiao status`), for a
session whose flow still records 退费状态 (cancelled from 2017, so a 2016 session here)."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from .conftest import Cli


def folder_of_year(tmp_path: Path, roster: Path, year: int) -> Cli:
    """An undergraduate folder of the given session year with the five-student roster."""
    runner = CliRunner()
    data = tmp_path / f"s{year}"
    made = runner.invoke(main, ["init", str(data), "--year", str(year), "--session", f"{year}届本科毕业生离校"])
    assert made.exit_code == 0, made.output
    cli = Cli(data, runner)
    assert cli("students", "import", str(roster)).exit_code == 0
    return cli


def test_refund_queries_by_college_status_and_student(tmp_path: Path, roster_file: Path) -> None:
    """Refunds recorded for two students: `lixiao refunds` counts them per college and status and filters by
    both; `lixiao status` says the student's own refund state; the report has 退费查询.html and an Excel sheet."""
    cli = folder_of_year(tmp_path, roster_file, 2016)
    assert cli("set", "0803010103", "refund_status", "passed").exit_code == 0
    assert cli("set", "0803010104", "refund_status", "failed", "--remark", "银行卡号有误").exit_code == 0
    doc = cli.json("refunds")
    assert doc["counts"] == {"机电工程学院": {"passed": 1, "failed": 1, "pending": 1},
                             "能源与安全工程学院": {"pending": 2}}
    assert [(s["student_no"], s["refund"]) for s in doc["students"]][:3] == [
        ("0803010103", "已退费"), ("0803010104", "退费未通过"), ("0803010105", "未退费")]
    pending = cli.json("refunds", "--college", "能源与安全工程学院", "--status", "未退费")["students"]
    assert sorted(s["student_no"] for s in pending) == ["0701020201", "0801020227"]
    table = cli("refunds").output
    assert "财务退费查询" in table and "退费未通过" in table

    record = cli.json("status", "0803010104")
    assert record["refund"] == {"status": "failed", "refund": "退费未通过", "remark": "银行卡号有误"}
    assert "退费查询：退费未通过（银行卡号有误）" in cli("status", "0803010104").output

    assert cli("report").exit_code == 0
    page = (cli.data / "reports" / "退费查询.html").read_text("utf-8")
    assert "财务退费查询（退费状态）" in page and "银行卡号有误" in page and 'href="退费查询.html"' in page
    book = openpyxl.load_workbook(cli.data / "reports" / "离校进度.xlsx", read_only=True)
    rows = [r for r in book["退费查询"].iter_rows(values_only=True) if r[0] and str(r[0]).isdigit()]
    assert len(rows) == 5 and ("0803010103", "丁德卫", "机电工程学院", "08机设1班", "已退费") in [r[:5] for r in rows]


def test_without_a_refund_step_the_queries_say_so(cli: Cli) -> None:
    """A 2026 session (退费状态 cancelled from 2017): `lixiao refunds` refuses with one line, status has no
    refund, and the report has no refund page or link."""
    result = cli("refunds")
    assert result.exit_code == 1 and "没有在用的退费步骤" in result.output
    assert cli.json("status", "0803010103")["refund"] is None
    assert cli("report").exit_code == 0
    assert not (cli.data / "reports" / "退费查询.html").exists()
    assert "退费查询.html" not in (cli.data / "reports" / "index.html").read_text("utf-8")
