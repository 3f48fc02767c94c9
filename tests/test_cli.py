"""The CLI contract: the issue's acceptance scenario, exit codes, one-line errors, JSON shapes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import click
import openpyxl
import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from .conftest import ROSTER, Cli

BEFORE_CERTIFICATES = ["party_transfer", "return_instruments", "return_books", "return_student_card",
                       "electricity", "dorm_items"]


def test_status_json_shows_every_step_with_applicability(cli: Cli) -> None:
    """status --json lists all 17 steps (15 offices + 2 at 教务处); loans, switch, 教务处 na unless flagged."""
    plain = cli.json("status", "0803010103")
    assert {"student_no", "name", "college", "class", "dorm", "complete", "steps", "blocked"} <= set(plain)
    statuses = {s["step"]: s["status"] for s in plain["steps"]}
    assert len(statuses) == 17
    assert {k for k, v in statuses.items() if v == "na"} == {
        "national_loan", "local_loan", "return_switch", "refund_status", "registrar_degree_certificate",
        "registrar_diploma"}
    flagged = {s["step"]: s["status"] for s in cli.json("status", "0803010105")["steps"]}
    assert flagged["local_loan"] == flagged["return_switch"] == "pending"
    first = plain["steps"][0]
    assert first["checkpoint_name"] == "机电工程学院离校点"
    assert {"checkpoint", "checkpoint_name", "step", "step_name", "status", "waived", "remark", "updated_at",
            "source"} <= set(first)
    assert plain["id_card"].count("*") == 8


def test_pass_refused_until_waived_then_restored(cli: Cli, pass_all: Callable[[str, list[str]], None]) -> None:
    """领取学位证 refused while 缴还欠款 pending, accepted after waive; unwaive restores the refusal."""
    no = "0803010103"
    pass_all(no, BEFORE_CERTIFICATES)
    refused = cli("set", no, "degree_certificate", "passed")
    assert refused.exit_code == 1
    assert "当前学生没有完成以下步骤，不能进行当前离校点的离校：财务处离校点：缴还欠款" in refused.output
    blocked = cli.json("status", no)["blocked"]
    assert blocked[0]["missing"] == ["财务处离校点：缴还欠款"]

    waived = cli("waive", no, "pay_arrears", "--reason", "欠费缓交", "--operator", "特殊离校点李老师")
    assert waived.exit_code == 0, waived.output
    listed = cli.json("waivers")
    assert [(w["student_no"], w["step"], w["reason"], w["operator"]) for w in listed] == [
        (no, "pay_arrears", "欠费缓交", "特殊离校点李老师")]
    assert cli("set", no, "degree_certificate", "passed").exit_code == 0

    assert cli("unwaive", no, "pay_arrears").exit_code == 0
    assert cli.json("waivers") == []
    again = cli("set", no, "diploma", "passed")
    assert again.exit_code == 1 and "财务处离校点：缴还欠款" in again.output


def test_waiver_on_passed_step_is_refused(cli: Cli, tmp_path: Path) -> None:
    """Once 缴还欠款 is passed there is no restriction left to lift (exit 1, manual's wording)."""
    feed = tmp_path / "f.csv"
    feed.write_text("学号,欠费金额\n0803010103,0\n", "utf-8")
    cli("feed", "finance", str(feed))
    result = cli("waive", "0803010103", "pay_arrears", "--reason", "x")
    assert result.exit_code == 1
    assert result.output.strip() == "错误：“缴还欠款”已通过，无法调整离校点限制"


def test_waive_refuses_a_step_the_special_desk_cannot_lift(cli: Cli) -> None:
    """`lixiao waive X electricity` exits 1 with the rule's message and records nothing."""
    for step, name in (("electricity", "清理电费"), ("party_transfer", "转出党团组织关系")):
        result = cli("waive", "0803010103", step, "--reason", "欠费缓交")
        assert result.exit_code == 1
        assert result.output.strip() == (f"错误：特殊离校点只能解除“缴还欠款”的限制；“{name}”须由所在离校点办理，"
                                         "不能解除")
    assert cli.json("waivers") == []


def test_step_may_be_named_in_chinese_when_unique(cli: Cli) -> None:
    """缴还欠款 works as well as pay_arrears; an ambiguous name asks for the code."""
    assert cli("waive", "0803010103", "缴还欠款", "--reason", "欠费缓交").exit_code == 0
    ambiguous = cli("set", "0801020227", "领取学位证", "passed")
    assert ambiguous.exit_code == 2
    assert "有多个步骤叫“领取学位证”，请用代码：degree_certificate、registrar_degree_certificate" in ambiguous.output


def test_status_by_name_and_id_card(cli: Cli) -> None:
    """A student is found by 学号, 姓名 or 身份证号."""
    shen = ROSTER[1]
    assert cli.json("status", "沈睿")["student_no"] == shen.student_no
    assert cli.json("status", shen.id_card)["student_no"] == shen.student_no
    assert cli.json("status", shen.id_card.lower())["student_no"] == shen.student_no


def test_unknown_student_and_missing_folder_are_one_line_exit_2(cli: Cli, tmp_path: Path) -> None:
    """Input errors print one line starting with 错误： and exit 2, never a traceback."""
    result = cli("status", "nobody")
    assert result.exit_code == 2
    assert result.output.strip() == "错误：找不到学生“nobody”（可用学号、姓名或身份证号查询）"
    runner = CliRunner()
    missing = runner.invoke(main, ["--data", str(tmp_path / "nope"), "status", "x"])
    assert missing.exit_code == 2
    assert missing.output.count("\n") == 1 and "lixiao init" in missing.output


def test_folder_found_from_env_and_parents(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --data the folder comes from $LIXIAO_DATA or the current folder's parents."""
    runner = CliRunner()
    monkeypatch.setenv("LIXIAO_DATA", str(cli.data))
    assert runner.invoke(main, ["status", "0803010103"]).exit_code == 0
    monkeypatch.delenv("LIXIAO_DATA")
    inner = cli.data / "outbox"
    monkeypatch.chdir(inner)
    assert runner.invoke(main, ["status", "0803010103"]).exit_code == 0


def test_init_is_private_and_refuses_twice(tmp_path: Path) -> None:
    """The folder is 0700, .secret 0600; a second init does not overwrite."""
    runner = CliRunner()
    data = tmp_path / "d"
    assert runner.invoke(main, ["init", str(data), "--flow", "graduate"]).exit_code == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / ".secret").stat().st_mode) == 0o600
    for sub in ("outbox", "inbox", "archive", "rejected", "receipts", "reports"):
        assert (data / sub).is_dir()
    again = runner.invoke(main, ["init", str(data)])
    assert again.exit_code == 2 and "不会覆盖" in again.output


def test_init_refuses_a_session_name_with_a_newline(tmp_path: Path) -> None:
    """A newline or control character in --session: exit 2, one line, and no folder left behind."""
    for bad in ("2026届\n[flow]\nfile = \"x\"", "2026届\x07本科"):
        result = CliRunner().invoke(main, ["init", str(tmp_path / "d"), "--session", bad])
        assert result.exit_code == 2
        assert result.output == ("错误：会话名称（--session）不能包含换行或控制字符；"
                                 "请写成一行，例如 2026届本科毕业生离校\n")
        assert not (tmp_path / "d").exists()


def test_init_writes_quotes_and_backslashes_in_the_session_name_safely(tmp_path: Path) -> None:
    """A session name with quotes and a backslash reads back exactly (lixiao.toml written by a TOML writer)."""
    name = '2026届本科"毕业生"\\离校'
    assert CliRunner().invoke(main, ["init", str(tmp_path / "d"), "--session", name]).exit_code == 0
    assert CliRunner().invoke(main, ["--data", str(tmp_path / "d"), "waivers"]).exit_code == 0
    assert tomllib.loads((tmp_path / "d" / "lixiao.toml").read_text("utf-8"))["session"]["name"] == name


def test_a_failure_in_the_middle_of_init_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the store is created removes the whole half-made folder (and a created parent)."""
    monkeypatch.setenv("LIXIAO_FAULT", "init:raise")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "new" / "d")])
    assert result.exit_code == 2 and result.output.startswith("错误：") and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "empty"
    existing.mkdir()
    (existing / "笔记.txt").write_text("用户自己的文件", "utf-8")
    assert CliRunner().invoke(main, ["init", str(existing)]).exit_code == 2
    assert sorted(p.name for p in existing.iterdir()) == ["笔记.txt"]


def test_init_again_over_a_half_made_folder(tmp_path: Path) -> None:
    """A folder an older version left without lixiao.toml (or without store.db) can be initialised again."""
    runner = CliRunner()
    no_settings, no_store = tmp_path / "a", tmp_path / "b"
    for data in (no_settings, no_store):
        assert runner.invoke(main, ["init", str(data)]).exit_code == 0
    (no_settings / "lixiao.toml").unlink()
    (no_store / "store.db").unlink()
    for data in (no_settings, no_store):
        result = runner.invoke(main, ["init", str(data), "--session", "2026届本科毕业生离校"])
        assert result.exit_code == 0, result.output
        assert runner.invoke(main, ["--data", str(data), "waivers", "--json"]).exit_code == 0


def test_init_keeps_a_store_that_holds_data(cli: Cli) -> None:
    """A store.db with students but no lixiao.toml is never replaced: init refuses and says what to do."""
    (cli.data / "lixiao.toml").unlink()
    result = CliRunner().invoke(main, ["init", str(cli.data)])
    assert result.exit_code == 2 and "已有数据" in result.output
    assert (cli.data / "store.db").stat().st_size > 0


def test_init_with_custom_flow_file_validates_it(tmp_path: Path) -> None:
    """A broken flow file is refused before any folder is created."""
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[checkpoint]]\ncode = "a"\nname = "甲"\nrequires = ["zz"]\n'
                   '[[checkpoint.step]]\ncode = "a1"\nname = "一"\n', "utf-8")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "d"), "--flow", str(bad)])
    assert result.exit_code == 2 and "前置条件 zz 不存在" in result.output
    assert not (tmp_path / "d").exists()


def test_flow_show_tree_and_json(cli: Cli) -> None:
    """flow show prints the tree with codes; --json the contract document."""
    text = cli("flow", "show").output
    assert "学院领取证件" in text and "pay_arrears" in text and "2017 年起取消" in text
    doc = cli.json("flow", "show")
    assert [c["code"] for c in doc["checkpoints"]][:3] == ["college", "library", "student_affairs"]
    preset = CliRunner().invoke(main, ["flow", "show", "--preset", "graduate", "--json"])
    assert json.loads(preset.output)["name"] == "研究生离校流程"


def test_export_json_matrix(cli: Cli, tmp_path: Path) -> None:
    """export FILE.json lists student_no, step, status, waived for every student and step."""
    cli("waive", "0803010103", "pay_arrears", "--reason", "欠费缓交")
    out = tmp_path / "m.json"
    assert cli("export", str(out)).exit_code == 0
    entries = json.loads(out.read_text("utf-8"))
    assert len(entries) == 5 * 17
    assert set(entries[0]) == {"student_no", "step", "status", "waived"}
    assert {"student_no": "0803010103", "step": "pay_arrears", "status": "pending", "waived": True} in entries


def test_export_xlsx_and_csv_use_the_manual_marks(cli: Cli, tmp_path: Path) -> None:
    """The spreadsheet exports show 未办理 / 已通过 and blank for not applicable."""
    cli("set", "0803010103", "electricity", "passed")
    csv_path = tmp_path / "m.csv"
    assert cli("export", str(csv_path)).exit_code == 0
    lines = csv_path.read_text("utf-8-sig").splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, next(x for x in lines if x.startswith("0803010103")).split(","), strict=True))
    assert row["清理电费"] == "已通过" and row["清理宿舍物品"] == "未办理" and row["归还交换机"] == ""
    assert cli("export", str(tmp_path / "m.xlsx")).exit_code == 0
    sheet = openpyxl.load_workbook(tmp_path / "m.xlsx")["离校状态"]
    rows = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    exported = dict(zip(rows[0], next(r for r in rows if r[0] == "0803010103"), strict=True))
    assert exported["清理电费"] == "已通过" and exported["清理宿舍物品"] == "未办理" and exported["归还交换机"] is None
    assert len(rows) == 1 + 5 and rows[0][:2] == ["学号", "姓名"] and rows[0][-1] == "全部完成"
    assert sheet.freeze_panes == "C3" and sheet.auto_filter.ref == f"A2:{sheet.cell(2, len(rows[0])).column_letter}7"
    colours = {rule.formula[0] for rng in sheet.conditional_formatting for rule in rng.rules}
    assert colours == {'"已通过"', '"未通过"'}  # passed and failed are coloured by value, not per cell
    assert cli("export", str(tmp_path / "m.txt")).exit_code == 2


def test_history_lists_audit_events(cli: Cli) -> None:
    """history shows the roster import and every status change with its operator."""
    cli("set", "0803010103", "electricity", "passed", "--operator", "水电王老师")
    events = cli.json("history", "0803010103")
    assert events[0]["kind"] == "student"
    assert (events[-1]["step"], events[-1]["new"], events[-1]["operator"]) == ("electricity", "passed", "水电王老师")


def test_verify_and_backup(cli: Cli, tmp_path: Path) -> None:
    """verify passes on a fresh folder; backup writes a verified copy."""
    result = cli("verify")
    assert result.exit_code == 0 and "校验通过" in result.output
    assert cli("backup", str(tmp_path / "b.db")).exit_code == 0
    assert cli("backup", str(tmp_path / "b.db")).exit_code == 2


def test_verify_reports_a_broken_chain(cli: Cli) -> None:
    """A tampered audit event makes verify exit 1 and name the event."""
    import sqlite3

    conn = sqlite3.connect(cli.data / "store.db")
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET new = 'passed' WHERE seq = 3")
    conn.commit()
    conn.close()
    result = cli("verify")
    assert result.exit_code == 1 and "审计记录 3 的内容与哈希不符" in result.output


def all_commands() -> list[tuple[str, ...]]:
    """Every command path of the CLI, e.g. ('students', 'import')."""
    found: list[tuple[str, ...]] = []
    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))
            else:
                found.append((*prefix, name))
    walk(main, ())
    return found


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    """Each command's --help works and shows an example line starting with lixiao."""
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "示例：" in result.output and "  lixiao " in result.output


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    """The installed `lixiao` entry point answers a bad call with one line and exit 2."""
    env = dict(os.environ, LIXIAO_DATA="")
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(tmp_path), "waivers"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("错误：")


@pytest.mark.parametrize(("args", "expected"), [
    (["waive", "0803010103", "pay_arrears"], "缺少选项 --reason（见 lixiao waive --help）"),
    (["set", "0803010103", "electricity", "maybe"], "状态 的值无效，只能是 已通过、未通过、未办理、可办可不办"),
    (["status"], "缺少参数 QUERY"),
    (["nosuch"], "没有命令 nosuch"),
    (["--bogus"], "没有选项 --bogus"),
    (["watch", "--poll", "abc"], "--poll 应为 0.5 到 3600 之间的数"),
    (["backup", "/nonexistent-dir/x.db"], "备份位置 /nonexistent-dir 不存在"),
])
def test_usage_errors_are_one_chinese_line(cli: Cli, args: list[str], expected: str) -> None:
    """A missing or wrong argument is one Chinese line naming it and the --help to read (exit 2)."""
    result = cli(*args)
    assert result.exit_code == 2 and result.output.startswith("错误：") and expected in result.output
    assert "Error" not in result.output and "Usage" not in result.output


def test_sync_of_a_folder_says_it_is_a_folder(cli: Cli) -> None:
    """`lixiao sync DIR` says DIR is a folder (not "file not found")."""
    result = cli("sync", str(cli.data / "outbox"))
    assert result.exit_code == 2 and "是文件夹" in result.output


def test_issue_without_students_says_to_import_them(tmp_path: Path) -> None:
    """Issuing in a folder with no roster yet is refused with the command to run, not an empty table."""
    runner = CliRunner()
    runner.invoke(main, ["init", str(tmp_path / "d")])
    result = runner.invoke(main, ["--data", str(tmp_path / "d"), "issue"])
    assert result.exit_code == 2 and "lixiao students import" in result.output


def test_a_session_name_too_long_for_file_names_is_refused(tmp_path: Path) -> None:
    """A 90-character session name would make every workbook's file name too long: refused at init."""
    result = CliRunner().invoke(main, ["init", str(tmp_path / "d"), "--session", "长" * 90])
    assert result.exit_code == 2 and "最长 40 个字" in result.output and not (tmp_path / "d").exists()


def test_taking_back_a_prerequisite_warns_about_passed_certificates(cli: Cli,
                                                                    pass_all: Callable[[str, list[str]], None]) -> None:
    """Setting 归还图书 back to 未办理 after 领取学位证 passed works (the record is not undone) but says so."""
    from .test_reports import EVERYTHING_FOR_PLAIN

    pass_all("0803010103", EVERYTHING_FOR_PLAIN)
    result = cli("set", "0803010103", "return_books", "pending")
    assert result.exit_code == 0
    assert "注意" in result.output and "领取学位证" in result.output and "归还图书" in result.output
    quiet = cli("set", "0803010103", "electricity", "passed")
    assert "注意" not in quiet.output


def test_the_cli_imports_no_heavy_library_until_a_command_needs_it() -> None:
    """`lixiao --help` (and the import behind every command) loads no spreadsheet, store or mail library: they
    are imported by the commands that use them (issue 14's P7; the time itself is measured by the bench)."""
    heavy = ("openpyxl", "xlsxwriter", "sqlite_utils", "python_calamine", "smtplib", "imaplib", "jinja2",
             "rich.progress", "watchdog")
    probe = f"import sys, lixiao.sync.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_roster_problems_are_printed_as_typed_not_as_markup(cli: Cli, tmp_path: Path) -> None:
    """A bad roster row whose cells look like rich markup ([red]…[/]) is listed literally, not styled or swallowed."""
    from lixiao.workbooks.roster import build_roster

    roster = tmp_path / "bad.xlsx"
    roster.write_bytes(build_roster([("[bold]0803", "[red]张三[/]", "男", "12345", "机电工程学院", "", "08机设1班", "",
                                      "本科", "否", "否", "否", "否", "否")]))
    result = cli("students", "import", str(roster))
    assert result.exit_code == 1 and "[bold]0803" in result.output
