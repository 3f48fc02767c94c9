"""What a coordinator reads is Chinese: every --help page, the history table, the coordinator guide, `set` taking
the Chinese status words; English appears only as what is typed (commands, options, choices, paths, settings)."""

from __future__ import annotations

import getpass
import html
import re
from pathlib import Path

import click
import openpyxl
import pytest
from click.testing import CliRunner

from lixiao.core.manual.flow import load_preset
from lixiao.sync.cli.base import console
from lixiao.sync.cli.main import main

from .conftest import ROSTER, Cli, drop, edit, outbox, sync
from .test_cli import all_commands

ROOT = Path(__file__).resolve().parent.parent
# Names of programs, formats and system parts that have no Chinese name a clerk would use.
TECHNICAL = {"lixiao", "Excel", "WPS", "LibreOffice", "Ctrl", "ExecStart", "inotify", "systemd", "IMAP", "SMTP",
             "JSON", "CSV", "https", "http", "zip", "xlsx", "csv", "json", "toml", "SQLite", "HMAC", "SHA",
             "SIGTERM", "Samba", "CIFS", "NFS", "VM", "Linux", "Windows", "Coremail", "QQ", "Message", "ID", "UTF",
             "GBK", "GB", "CA", "USB", "PC", "Dovecot", "TLS", "SSL", "Office", "journal", "cron", "PATH", "sudo",
             "root", "sh", "tee", "mail", "systemctl", "journalctl", "watch", "Restart", "ProtectSystem",
             "ProtectHome", "PrivateTmp", "NoNewPrivileges", "TimeoutStopSec", "User", "on", "failure", "strict",
             "read", "only", "err", "A4", "FIFO", "xls", "rar", "Excel's", "docs", "md", "README", "GB18030",
             "LixiaoDone", "RFC", "Python", "uv", "pip", "Debian", "Ubuntu", "Chromium", "flow", "undergrad",
             "graduate", "ssl", "starttls", "flag", "hold", "untouched", "passed", "failed", "pending", "optional",
             "true", "false", "xdg", "Delete"}


def _typed(group: click.Group) -> set[str]:
    """Everything a coordinator types: command names and the choices of every parameter."""
    words: set[str] = set()
    for name, command in group.commands.items():
        words.add(name)
        for param in command.params:
            if isinstance(param.type, click.Choice):
                words.update(str(c) for c in param.type.choices)
        if isinstance(command, click.Group):
            words |= _typed(command)
    return words


TYPED = _typed(main) | {code for preset in ("undergrad", "graduate") for flow in [load_preset(preset)]
                        for code in (*flow.steps, *(c.code for c in flow.checkpoints))}


def english(text: str, allowed: frozenset[str] = frozenset(), strict: bool = False) -> list[str]:
    """The English words of ``text`` outside options, metavars, paths, file names, settings and the allow-list;
    ``strict``: nothing typed or technical is allowed, and a ``source:file`` is two words."""
    if strict:
        text = text.replace(":", " ")
    text = re.sub(r"--?[\w-]+", " ", text)  # options
    text = re.sub(r"\S*(?:[/\\@_$~=]|\.\w)\S*", " ", text)  # paths, file names, addresses, settings keys, variables
    text = re.sub(r"\b[A-Z][A-Z0-9]+\b", " ", text)  # metavars (学号 STUDENT), acronyms
    words = re.findall(r"[A-Za-z][A-Za-z']+", text)
    if strict:
        return [w for w in words if w not in allowed]
    return [w for w in words if w not in TYPED and w not in TECHNICAL and w not in allowed]


def _pages() -> list[tuple[str, ...]]:
    groups = sorted({c[:1] for c in all_commands() if len(c) > 1})
    return [(), *groups, *all_commands()]


@pytest.mark.parametrize("command", _pages(), ids=lambda c: " ".join(c) or "lixiao")
def test_every_help_page_is_chinese(command: tuple[str, ...]) -> None:
    """Each --help page (click's own headings included) has no English beyond commands, options and choices."""
    result = CliRunner().invoke(main, [*command, "--help"], prog_name="lixiao")
    assert result.exit_code == 0
    assert english(result.output) == [], result.output
    assert "用法：" in result.output and "选项：" in result.output


def test_the_english_check_finds_english() -> None:
    """The check itself reports English prose, click's defaults and untranslated words (it can fail)."""
    assert english("Usage: lixiao set [OPTIONS]\n  Set one step by hand.") == ["Usage", "Set", "one", "step", "by",
                                                                                "hand"]
    assert english("结果 applied，来源 roster:名单.xlsx", strict=True) == ["applied", "roster"]


def test_set_takes_the_chinese_status_words_and_marks(issued: Cli) -> None:
    """`lixiao set` takes 已通过 / 未通过 / 未办理 / 可办可不办 and the marks ✓ ✗ ×, as well as the codes; a wrong word
    is refused in Chinese, naming the four words."""
    no = ROSTER[0].student_no
    for word, stored in (("已通过", "passed"), ("未办理", "pending"), ("✓", "passed"), ("×", "failed"),
                         ("未通过", "failed"), ("pending", "pending"), ("✓ 已通过", "passed")):
        result = issued("set", no, "清理电费", word, "--remark", "测试", "--operator", "张老师")
        assert result.exit_code == 0, result.output
        [step] = [s for s in issued.json("status", no)["steps"] if s["step"] == "electricity"]
        assert step["status"] == stored, word
    wrong = issued("set", no, "清理电费", "通过")
    assert wrong.exit_code == 2
    assert "已通过、未通过、未办理、可办可不办" in wrong.output and "Invalid" not in wrong.output


def test_history_shows_chinese_words_only(issued: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lixiao history` names every kind, result, source and roster field in Chinese (no applied/roster/feed/
    student_no): after a roster import, a feed, a return, a set and a waiver."""
    monkeypatch.setattr(console, "width", 1000)  # one line per event: the words are not wrapped apart
    no = ROSTER[0].student_no
    finance = tmp_path / "财务.csv"
    finance.write_text(f"学号,欠费金额\n{no},120\n", "utf-8")
    library = tmp_path / "图书馆.csv"
    library.write_text(f"学号,借阅册数,欠费\n{no},0,0\n", "utf-8")
    for kind, path in (("finance", finance), ("library", library)):
        assert issued("feed", kind, str(path), "--operator", "张老师").exit_code in (0, 1)
    drop(issued, "水电.xlsx", edit(outbox(issued, "utilities")[0], {(no, "清理电费"): True}))
    sync(issued)
    assert issued("set", no, "归还学生证", "已通过", "--operator", "张老师").exit_code == 0
    assert issued("waive", no, "pay_arrears", "--reason", "欠费缓交", "--operator", "张老师").exit_code == 0
    result = issued("history", no)
    assert result.exit_code == 0, result.output
    table = " ".join(result.output.split())
    for word in ("学生名单", "数据源", "财务", "交回的工作簿", "已解除", "已记录", "学号", "姓名", "已通过"):
        assert word in table, word
    assert english(result.output, frozenset({getpass.getuser()}), strict=True) == [], result.output


@pytest.mark.parametrize("guide", ["coordinator-guide", "staff-guide", "admin-guide"])
def test_every_guide_for_the_people_who_use_lixiao_is_chinese(guide: str) -> None:
    """The coordinator, staff and admin guides are Chinese prose: English only in commands, settings and code."""
    text = (ROOT / "docs" / f"{guide}.md").read_text("utf-8")
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # settings and shell blocks are typed as they are
    text = re.sub(r"`[^`]*`|!\[[^\]]*\]\([^)]*\)", " ", text)  # commands, file names, images
    assert english(text) == []


def test_no_message_says_to_empty_a_box_to_untick_it() -> None:
    """Unticking is FALSE or 未办理 everywhere: no message of the program advises leaving a box 留空 to untick it."""
    advice = re.compile(r"(取消|未办理|撤销)[^。\n\"]{0,20}留空|留空[^。\n\"]{0,12}(取消|未办理)")
    folders = ("core", "workbooks", "sync", "reports", "templates")
    found = [f"{path.relative_to(ROOT)}: {m.group()}" for folder in folders
             for path in sorted((ROOT / folder).rglob("*")) if path.suffix in (".py", ".html")
             for m in advice.finditer(path.read_text("utf-8"))]
    assert found == []
    assert advice.search("要取消勾选请把格子留空")  # the check finds the old advice


def test_the_report_pages_and_receipts_are_chinese(issued: Cli, tmp_path: Path) -> None:
    """The report's pages and a receipt show no English beyond commands, settings and program names."""
    no = ROSTER[0].student_no
    library = tmp_path / "图书馆.csv"
    library.write_text(f"学号,借阅册数,欠费\n{no},0,0\n", "utf-8")
    assert issued("feed", "library", str(library)).exit_code == 0
    drop(issued, "水电.xlsx", edit(outbox(issued, "utilities")[0], {(no, "清理电费"): True}))
    drop(issued, "坏文件.xlsx", "学号,姓名\n0803010103,丁德卫\n".encode())
    sync(issued)
    assert issued("report").exit_code == 0
    programs = frozenset({"Microsoft", "Compatible", "Openpyxl"})  # what saved a return, as the file names it
    for page in sorted((issued.data / "reports").glob("*.html")):
        text = re.sub(r"<script.*?</script>|<style.*?</style>|<code>.*?</code>", " ", page.read_text("utf-8"),
                      flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        assert english(re.sub(r"\b[0-9a-f]{6,}\b", " ", text), programs) == [], page.name
    receipts = sorted((issued.data / "receipts").glob("*.xlsx"))
    assert receipts
    for receipt in receipts:
        book = openpyxl.load_workbook(receipt)
        text = " ".join(str(c.value) for sheet in book for row in sheet.iter_rows() for c in row if c.value is not None)
        assert english(re.sub(r"\b[0-9a-f]{6,}\b", " ", text), programs) == [], receipt.name
