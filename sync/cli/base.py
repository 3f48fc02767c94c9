"""What every lixiao command shares: the error-to-one-line group, the folder opener with its lock, output helpers."""


from __future__ import annotations

import errno
import getpass
import json
import os
import sqlite3
import sys
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from lixiao.core.feeds.exports import FeedError
from lixiao.core.manual.flow import FlowError
from lixiao.core.manual.model import STATUS_LABELS, STATUS_MARKS, Status
from lixiao.core.manual.roster import RosterError
from lixiao.core.manual.rules import ClearanceError, RefusedError
from lixiao.core.storage.guard import StoreError
from lixiao.sync.datafolder import DataFolder, DataFolderError, find_folder, open_folder
from lixiao.sync.locking import WAITING_MESSAGE, LockBusyError, watch_lock, writer_lock
from lixiao.sync.messages import os_error_text, usage_error_text

MARKS = {s.value: mark for s, mark in STATUS_MARKS.items()}
INPUT_ERRORS: tuple[type[Exception], ...] = (DataFolderError, FlowError, StoreError, ClearanceError, RosterError,
                                             FeedError)
# Input errors of modules a command imports only when it needs them (openpyxl, XlsxWriter, mail): an error of a
# module that was never imported cannot have been raised, so each is looked up only if its module is loaded.
LATE_ERRORS = (("lixiao.core.clearance.issuance", "IssueError"), ("lixiao.workbooks.tables", "TableError"),
               ("lixiao.sync.live.mail", "MailError"))


def input_errors() -> tuple[type[Exception], ...]:
    """INPUT_ERRORS and the LATE_ERRORS of the modules loaded so far."""
    late = tuple(getattr(sys.modules[m], name) for m, name in LATE_ERRORS if m in sys.modules)
    return INPUT_ERRORS + late
# Rich falls back to 80 columns when piped; Chinese tables need more to stay readable in a log.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class StatusWord(click.Choice):  # type: ignore[type-arg]
    """A status as a coordinator writes it: 已通过 / 未通过 / 未办理 / 可办可不办, the manual's marks (✓ ✗ × ○ ↓),
    or the English code (passed, failed, pending, optional); converted to the Status value."""

    def __init__(self) -> None:
        super().__init__([STATUS_LABELS[s] for s in SETTABLE])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        found = STATUS_WORDS.get(text) or STATUS_WORDS.get(text.lower())
        if found is not None:
            return found.value
        return super().convert(text, param, ctx)  # refused there, naming the four words


SETTABLE = (Status.PASSED, Status.FAILED, Status.PENDING, Status.OPTIONAL)
STATUS_WORDS: dict[str, Status] = {word: s for s in SETTABLE
                                   for word in (s.value, STATUS_LABELS[s], STATUS_MARKS[s], s.marked)}
STATUS_WORDS |= {"×": Status.FAILED, "✕": Status.FAILED, "√": Status.PASSED, "✔": Status.PASSED}


class Refused(click.ClickException):
    """The command ran but something was refused (exit 1)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"已拒绝：{self.format_message()}", err=True)


# click's own words in a --help page, in Chinese (a coordinator reads every help page).
HELP_WORDS = {"Usage:": "用法：", "Options": "选项", "Commands": "命令",
              "Show this message and exit.": "显示本帮助并退出",
              "Show the version and exit.": "显示版本并退出", "[default: ": "[默认：", "[required]": "[必填]",
              "default: ": "默认：", "required": "必填"}


class ChineseHelpFormatter(click.HelpFormatter):
    """click's help layout with its own headings and option notes in Chinese."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, HELP_WORDS["Usage:"] if prefix is None else prefix)

    def write_heading(self, heading: str) -> None:
        self.write(f"{'':>{self.current_indent}}{HELP_WORDS.get(heading, heading)}：\n")

    def write_dl(self, rows: Any, col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, _chinese_notes(text)) for term, text in rows], col_max, col_spacing)


def _chinese_notes(text: str) -> str:
    for english in ("Show this message and exit.", "Show the version and exit.", "[default: ", "[required]"):
        text = text.replace(english, HELP_WORDS[english])
    return text


class ChineseContext(click.Context):
    """A context whose --help page is laid out by ChineseHelpFormatter."""

    formatter_class = ChineseHelpFormatter


def chinese_help(command: click.Command) -> None:
    """Give a command (and, for a group, every subcommand) Chinese help: headings, [选项], 命令 [参数]."""
    command.context_class = ChineseContext
    command.options_metavar = "[选项]"
    if isinstance(command, click.Group):
        command.subcommand_metavar = "命令 [参数]..."
        for sub in command.commands.values():
            chinese_help(sub)


class LixiaoGroup(click.Group):
    """A group that turns library errors into one clear line and exit code 2 (1 for refusals); its commands' help
    is in Chinese."""

    context_class = ChineseContext
    group_class = type  # its subgroups (students, flow) are LixiaoGroups too, so their subcommands get Chinese help

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options_metavar, self.subcommand_metavar = "[选项]", "命令 [参数]..."

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        chinese_help(cmd)
        super().add_command(cmd, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            fail(usage_error_text(exc), 2)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            fail(usage_error_text(exc), 2)
        except (RefusedError, LockBusyError) as exc:
            fail(str(exc), 1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            fail("已中断", 130)
        except Exception as exc:  # noqa: BLE001 - the CLI promise: one line, never a traceback
            if isinstance(exc, input_errors()):
                fail(str(exc), 2)
            self._fail_other(exc)

    @staticmethod
    def _fail_other(exc: Exception) -> NoReturn:
        """Anything else as one line: disk and database trouble, an internal error."""
        try:
            raise exc
        except sqlite3.OperationalError as exc:
            if "full" in str(exc) or "I/O" in str(exc):
                fail(f"磁盘已满或无法写入（{exc}）；当前这一步已整体回滚，学生状态没有改变。请腾出空间后重试", 2)
            fail(f"数据库错误：{exc}（可能有其他程序占用数据库，请稍后重试）", 2)
        except sqlite3.DatabaseError as exc:  # read-only commands skip the write guard's quick_check
            fail(f"数据库已损坏（{exc}）；请停止 lixiao，用 lixiao backup 的备份恢复（见 README“备份与恢复”）", 2)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                fail(f"磁盘已满（{os_error_text(exc)}）；已写入的内容保持一致，请腾出空间后重试", 2)
            where = f"：{exc.filename}" if exc.filename else ""
            fail(f"无法读写文件{where}（{os_error_text(exc)}）", 2)
        except Exception as exc:  # noqa: BLE001 - the CLI promise: one line, never a traceback
            if os.environ.get("LIXIAO_DEBUG"):
                traceback.print_exc()
            fail(f"内部错误：{type(exc).__name__}: {exc}（设置 LIXIAO_DEBUG=1 可查看详情，请报告此问题）", 2)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"错误：{message}", err=True)
    sys.exit(code)


def operator_name(value: str | None) -> str:
    if value:
        return value
    try:
        return os.environ.get("LIXIAO_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def say_waiting() -> None:
    click.echo(WAITING_MESSAGE, err=True)


@contextmanager
def open_data(ctx: click.Context, write: bool, watch: bool = False) -> Iterator[DataFolder]:
    """The one place that takes the folder's lock and opens it.

    ``write``: hold the writer lock for the command (waiting up to 30 s). ``watch``: hold the watch lock
    instead, for the daemon's life; the daemon takes the writer lock itself around each batch.
    """
    root = find_folder(ctx.obj.get("data"))
    with ExitStack() as stack:
        if watch:
            stack.enter_context(watch_lock(root))
        elif write:
            stack.enter_context(writer_lock(root, on_wait=say_waiting))
        folder = open_folder(root, write=write or watch)
        stack.callback(folder.close)
        yield folder


def read_input(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFolderError(f"无法读取 {path}：{os_error_text(exc)}") from None


def print_problems(warnings: list[str], problems: list[object]) -> None:
    """A file's warnings and bad rows (roster, 通讯录), one line each; their text is the file's, so escaped."""
    from rich.markup import escape

    for warning in warnings:
        console.print(f"[yellow]注意：{escape(warning)}[/]")
    if problems:
        console.print(f"[red]{len(problems)} 行有错误：[/]")
        for problem in problems:
            console.print(f"  {escape(str(problem))}")


def print_json(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def examples(text: str) -> str:
    """A command epilog listing examples, kept verbatim by click (\b)."""
    return "示例：\n\n\b\n" + text
