"""`lixiao demo` builds a realistic folder end to end and leaves a store that verifies."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from lixiao.core.feeds.synthetic import make_cohort
from lixiao.sync.cli.main import main


@pytest.mark.slow
def test_demo_runs_and_verifies(tmp_path: Path) -> None:
    """The demo imports the cohort, applies feeds and waivers, prints figures, and verify passes."""
    runner = CliRunner()
    folder = tmp_path / "demo"
    result = runner.invoke(main, ["demo", str(folder), "--students", "200"])
    assert result.exit_code == 0, result.output
    assert "应离校人数 200 人" in result.output and "实时统计" in result.output
    assert "暂缓发证（学位证）：" in result.output and "在教务处离校点领 领取学位证" in result.output
    assert "只差退费的学生 → 可以领证" in result.output
    assert runner.invoke(main, ["--data", str(folder), "verify"]).exit_code == 0
    waivers = json.loads(runner.invoke(main, ["--data", str(folder), "waivers", "--json"]).output)
    assert waivers and all(w["reason"] == "欠费缓交" for w in waivers)
    # the season ran through the shared-folder channel, end to end
    share = folder / "共享"
    dorm = share / "宿管中心离校点"
    assert [p.name[-9:] for p in (dorm / "待办").glob("*.xlsx")] == ["-第1版.xlsx"]
    assert list((dorm / "交回" / "已处理").glob("*.xlsx")) and list((dorm / "交回" / "回执").glob("*-回执.xlsx"))
    assert not list((dorm / "交回").glob("*.xlsx"))  # every return was taken
    desk = next(share.glob("*领取证件"))
    fresh = sorted((desk / "待办").glob("*.xlsx"))
    assert [p.name[-9:] for p in fresh] == ["-第2版.xlsx"] and list((desk / "待办" / "旧版").glob("*第1版.xlsx"))
    assert openpyxl.load_workbook(fresh[0], read_only=True).sheetnames[0] == "可领证名单"
    with sqlite3.connect(folder / "store.db") as conn:
        channels = {c for (c,) in conn.execute("SELECT DISTINCT channel FROM returns")}
    assert channels == {"share"}
    again = runner.invoke(main, ["demo", str(folder), "--students", "50"])
    assert again.exit_code == 0 and "应离校人数 50 人" in again.output


def test_demo_never_removes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    """A non-empty folder without the demo mark is left alone (exit 2)."""
    (tmp_path / "precious.txt").write_text("x")
    result = CliRunner().invoke(main, ["demo", str(tmp_path)])
    assert result.exit_code == 2 and (tmp_path / "precious.txt").exists()


def test_cohort_is_realistic() -> None:
    """Unique 学号 and 身份证号, 4–6 beds a room, ~10 % national loans, some 往届 and withheld."""
    cohort = make_cohort(3000)
    students = cohort.students
    assert len({s.student_no for s in students}) == len({s.id_card for s in students}) == 3000
    rooms: dict[str, int] = {}
    for s in students:
        if s.dorm:
            rooms[s.dorm] = rooms.get(s.dorm, 0) + 1
    full = [n for n in rooms.values()]
    assert max(full) <= 6 and sorted(full)[len(full) // 2] >= 4
    assert 0.07 < sum(s.national_loan for s in students) / 3000 < 0.13
    assert any(s.previous for s in students) and any(s.withheld for s in students)
    assert all(s.class_name.endswith("班") for s in students)
