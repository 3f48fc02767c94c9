"""The ``lixiao`` command line: each command opens the data folder, calls one library function, reports."""

from __future__ import annotations

import errno
import getpass
import json
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable

from lixiao.core.clearance import ClearanceError, RefusedError
from lixiao.core.feeds import FeedError, parse_feed
from lixiao.core.flow import PRESETS, FlowError, flow_to_dict, load_preset
from lixiao.core.identity import mask_ids_in_text
from lixiao.core.issuance import SPLITS, IssueError
from lixiao.core.model import STATUS_LABELS, Flow, Status
from lixiao.core.roster import RosterError, validate_roster
from lixiao.core.store import StoreError
from lixiao.workbooks.matrix import IDENTITY, matrix_csv
from lixiao.workbooks.roster import build_roster_template
from lixiao.workbooks.tables import TableError, read_table

from .datafolder import DataFolder, DataFolderError, find_folder, init_folder, open_folder
from .locking import WAITING_MESSAGE, LockBusyError, watch_lock, writer_lock
from .messages import OUTCOME_LABELS, os_error_text, strip_code, usage_error_text

MARKS = {"passed": "✓", "failed": "✗", "optional": "○", "pending": "↓", "na": "–"}
INPUT_ERRORS = (DataFolderError, FlowError, StoreError, ClearanceError, RosterError, FeedError, TableError,
                IssueError)
# Rich falls back to 80 columns when piped; Chinese tables need more to stay readable in a log.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class Refused(click.ClickException):
    """The command ran but something was refused (exit 1)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"已拒绝：{self.format_message()}", err=True)


class LixiaoGroup(click.Group):
    """A group that turns library errors into one clear line and exit code 2 (1 for refusals)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _fail(usage_error_text(exc), 2)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _fail(usage_error_text(exc), 2)
        except (RefusedError, LockBusyError) as exc:
            _fail(str(exc), 1)
        except INPUT_ERRORS as exc:
            _fail(str(exc), 2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _fail("已中断", 130)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc) or "I/O" in str(exc):
                _fail(f"磁盘已满或无法写入（{exc}）；当前这一步已整体回滚，学生状态没有改变。请腾出空间后重试", 2)
            _fail(f"数据库错误：{exc}（可能有其他程序占用数据库，请稍后重试）", 2)
        except sqlite3.DatabaseError as exc:  # read-only commands skip the write guard's quick_check
            _fail(f"数据库已损坏（{exc}）；请停止 lixiao，用 lixiao backup 的备份恢复（见 README“备份与恢复”）", 2)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                _fail(f"磁盘已满（{os_error_text(exc)}）；已写入的内容保持一致，请腾出空间后重试", 2)
            where = f"：{exc.filename}" if exc.filename else ""
            _fail(f"无法读写文件{where}（{os_error_text(exc)}）", 2)
        except Exception as exc:  # noqa: BLE001 - the CLI promise: one line, never a traceback
            if os.environ.get("LIXIAO_DEBUG"):
                traceback.print_exc()
            _fail(f"内部错误：{type(exc).__name__}: {exc}（设置 LIXIAO_DEBUG=1 可查看详情，请报告此问题）", 2)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"错误：{message}", err=True)
    sys.exit(code)


def _operator(value: str | None) -> str:
    if value:
        return value
    try:
        return os.environ.get("LIXIAO_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _say_waiting() -> None:
    click.echo(WAITING_MESSAGE, err=True)


@contextmanager
def _folder(ctx: click.Context, write: bool, watch: bool = False) -> Iterator[DataFolder]:
    """The one place that takes the folder's lock and opens it.

    ``write``: hold the writer lock for the command (waiting up to 30 s). ``watch``: hold the watch lock
    instead, for the daemon's life; the daemon takes the writer lock itself around each batch.
    """
    root = find_folder(ctx.obj.get("data"))
    with ExitStack() as stack:
        if watch:
            stack.enter_context(watch_lock(root))
        elif write:
            stack.enter_context(writer_lock(root, on_wait=_say_waiting))
        folder = open_folder(root, write=write or watch)
        stack.callback(folder.close)
        yield folder


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFolderError(f"无法读取 {path}：{os_error_text(exc)}") from None


def _json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _examples(text: str) -> str:
    """A command epilog listing examples, kept verbatim by click (\b)."""
    return "示例 (example):\n\n\b\n" + text


@click.group(cls=LixiaoGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data", metavar="DIR", help="数据文件夹（默认：$LIXIAO_DATA，或当前文件夹及其上级）")
@click.version_option(package_name="lixiao")
@click.pass_context
def main(ctx: click.Context, data: str | None) -> None:
    """lixiao 数字离校：用 Excel 工作簿办理毕业生离校手续。

    Graduation clearance through spreadsheets: one store, checkbox workbooks per office.
    """
    ctx.ensure_object(dict)
    ctx.obj["data"] = data


@main.command(epilog=_examples("  lixiao init 2026离校 --flow undergrad --session 2026届本科毕业生离校"))
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--flow", "flow_name", default="undergrad", show_default=True,
              help=f"预置流程（{'|'.join(PRESETS)}）或流程 .toml 文件")
@click.option("--session", help="离校会话名称，如 2026届本科毕业生离校")
@click.option("--year", type=int, help="届别年份（默认取会话名称中的年份或今年）")
def init(directory: Path, flow_name: str, session: str | None, year: int | None) -> None:
    """创建数据文件夹（设置、可编辑的流程、数据库、收发文件夹）。Create a data folder."""
    folder = init_folder(directory, flow_name, session, year)
    try:
        console.print(f"已创建数据文件夹 {directory}（{folder.session_name}，流程：{folder.flow.name}）")
        console.print(f"下一步：lixiao --data {directory} students import 学生名单.xlsx")
    finally:
        folder.close()


@main.group()
def students() -> None:
    """学生名单：导入与模板。Roster (学生名单): import and template."""


@students.command("template", epilog=_examples("  lixiao students template 学生名单模板.xlsx"))
@click.argument("file", type=click.Path(path_type=Path))
def students_template(file: Path) -> None:
    """写出带标准中文表头的空白学生名单。Write an empty roster .xlsx with the expected Chinese headers."""
    if file.suffix.lower() != ".xlsx":
        raise DataFolderError("模板文件名应以 .xlsx 结尾")
    file.write_bytes(build_roster_template())
    console.print(f"已写出名单模板 {file}（第 2 行是示例，导入前请删除）")


@students.command("import", epilog=_examples(
    "  lixiao students import 学生名单.xlsx\n  lixiao students import 名单.csv --skip-bad"))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--skip-bad", is_flag=True, help="导入正确的行，跳过有错的行（默认：有错则全部不导入）")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def students_import(ctx: click.Context, file: Path, skip_bad: bool, operator: str | None) -> None:
    """导入学生名单（.xlsx 或 .csv）；有错的行逐行列出。Import a roster; bad rows are listed with their row numbers."""
    table = read_table(_read(file), file.name)
    result = validate_roster(table.headers, table.rows)
    for warning in result.warnings:
        console.print(f"[yellow]注意：{warning}[/]")
    if result.problems:
        console.print(f"[red]{len(result.problems)} 行有错误：[/]")
        for problem in result.problems:
            console.print(f"  {problem}")
        if not skip_bad:
            raise Refused("名单有错误，没有导入任何学生；请改正后重新导入，或加 --skip-bad 只导入正确的行")
    with _folder(ctx, write=True) as folder:
        counts = folder.store.upsert_students(result.students, source=f"roster:{file.name}",
                                              operator=_operator(operator))
    console.print(f"导入完成：新增 {counts['added']}，更新 {counts['updated']}，未变 {counts['unchanged']}")
    if result.problems:
        raise Refused(f"跳过了 {len(result.problems)} 行有错误的学生")


@main.group()
def flow() -> None:
    """离校流程：离校点、步骤、前置条件。The flow: checkpoints, steps, prerequisites."""


@flow.command("show", epilog=_examples("  lixiao flow show\n  lixiao flow show --preset graduate --json"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.option("--preset", type=click.Choice(PRESETS), help="显示预置流程（无需数据文件夹）")
@click.pass_context
def flow_show(ctx: click.Context, as_json: bool, preset: str | None) -> None:
    """显示离校点、步骤、适用对象、批量方式和前置条件。Show the flow."""
    if preset:
        shown, year = load_preset(preset), 2026
    else:
        with _folder(ctx, write=False) as folder:
            shown, year = folder.flow, folder.year
    if as_json:
        _json(flow_to_dict(shown, year))
    else:
        _print_flow(shown, year)


APPLIES = {"all": "全部学生", "national_loan": "国家助学贷款学生", "local_loan": "生源地贷款学生",
           "switch": "借用交换机的学生", "withheld": "暂缓发证的学生", "previous": "往届生"}
BATCH = {"class": "按班级", "dorm": "按宿舍", "college": "按学院"}


def _applies_text(rule: str) -> str:
    if rule.startswith("!"):
        return "除" + APPLIES.get(rule[1:], rule[1:]) + "外"
    return APPLIES.get(rule, rule)


def _print_flow(shown: Flow, year: int) -> None:
    console.print(f"[bold]{shown.name}[/]（{year} 届）")
    for number, cp in enumerate(shown.checkpoints, start=1):
        extra = []
        if cp.per_college:
            extra.append("每个学院一个")
        if cp.batch:
            extra.append("批量：" + "、".join(BATCH[b] for b in cp.batch))
        if cp.requires:
            extra.append("前置：" + "、".join(cp.requires))
        if cp.lifts:
            extra.append("可解除限制：" + "、".join(cp.lifts))
        notes = f"  [cyan]{'；'.join(extra)}[/]" if extra else ""
        console.print(f"{number}. [bold]{cp.name}[/] [dim]{cp.code}[/]{notes}")
        for step in cp.steps:
            step_notes = [_applies_text(step.applies_to)]
            if step.feed:
                step_notes.append(f"数据源 {step.feed}")
            if not step.enabled(year):
                step_notes.append(f"[red]{step.disabled_from} 年起取消[/]")
            console.print(f"   - {step.name} [dim]{step.code}[/]  {'；'.join(step_notes)}")


@main.command(epilog=_examples("  lixiao feed library 图书馆导出.xlsx\n  lixiao feed finance 欠费.csv\n"
           "  lixiao feed loans 国开行确认.xlsx --loan national"))
@click.argument("kind", type=click.Choice(["library", "finance", "loans"]))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--loan", type=click.Choice(["national", "local"]), help="贷款名单没有“贷款类型”列时指明种类")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def feed(ctx: click.Context, kind: str, file: Path, loan: str | None, operator: str | None) -> None:
    """导入图书馆（学号,借阅册数,欠费）、财务（学号,欠费金额）或贷款系统的数据。Apply a feed."""
    table = read_table(_read(file), file.name)
    parsed = parse_feed(kind, table.headers, table.rows, loan or "")
    with _folder(ctx, write=True) as folder:
        report = folder.clearance.apply_feed(parsed.entries, source=f"feed:{kind}:{file.name}",
                                             operator=_operator(operator))
    console.print(f"已通过 {report.passed}，未通过 {report.failed}，未变 {report.unchanged}")
    if report.reverted:
        console.print(f"[yellow]{len(report.reverted)} 名学生由“已通过”变为“未通过”（已记入审计）：[/]")
        for line in report.reverted:
            console.print(f"  {line}")
    trouble = parsed.problems + [f"找不到学生：{u}" for u in report.unknown] + report.refused
    for line in trouble:
        console.print(f"  [red]{line}[/]")
    if trouble:
        raise Refused(f"{len(trouble)} 行未能应用（见上）")


@main.command(epilog=_examples(
    "  lixiao issue\n  lixiao issue --checkpoint utilities --checkpoint dorm\n"
    "  lixiao issue --checkpoint college --split class"))
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="CODE",
              help="只签发这些离校点（可多次给出；默认：所有需要勾选的离校点和特殊离校点）")
@click.option("--split", type=click.Choice(SPLITS), help="再按学院、班级或宿舍拆成多个文件")
@click.pass_context
def issue(ctx: click.Context, checkpoints: tuple[str, ...], split: str | None) -> None:
    """为各离校点签发勾选工作簿到 outbox/（再次签发版本加一）。Issue the workbooks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .issuing import issue_workbooks, plan_all

    with _folder(ctx, write=True) as folder:
        plans = plan_all(folder, list(checkpoints), split)
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("签发工作簿", total=None)

            def report(done: int, total: int, name: str) -> None:
                bar.update(task, completed=done, total=total, description=f"签发 {name}")

            issued = issue_workbooks(folder, plans, report)
        table = RichTable(title=f"已签发 {len(issued)} 个工作簿")
        for column in ("离校点", "范围", "版本", "学生数", "文件"):
            table.add_column(column)
        for item in issued:
            table.add_row(item.title, item.scope, str(item.generation), str(item.students),
                          str(item.path.relative_to(folder.root)))
    console.print(table)


@main.command("sync", epilog=_examples(
    "  lixiao sync\n  lixiao sync --dry-run --json\n  lixiao sync ~/下载/水电通信中心离校点-第1版.xlsx"))
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="只报告将会发生什么，不写入任何内容")
@click.option("--confirm", is_flag=True,
              help="确认 held/ 中待确认的文件（撤销过多而暂缓的交回）并使其生效；须给出文件")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def sync_command(ctx: click.Context, files: tuple[Path, ...], dry_run: bool, confirm: bool, as_json: bool) -> None:
    """处理收件箱中交回的工作簿：核验、合并、存档、回执。Sync returned workbooks once.

    撤销超过 [sync] max_revocations 个已通过格子的交回会暂缓（held/），核对后用 --confirm 使其生效。
    """
    if confirm and not files:
        raise click.UsageError("--confirm 需要给出 held/ 中的文件，如 lixiao sync --confirm held/水电.xlsx")
    from .pipeline import refresh_reports, sync

    with _folder(ctx, write=True) as folder:
        folders = [str(f) for f in files if f.is_dir()]
        if folders:
            raise DataFolderError(f"{'、'.join(folders)} 是文件夹；请给出文件，或把文件放入 inbox/ 后运行 lixiao sync")
        missing = [str(f) for f in files if not f.is_file() and not f.is_symlink()]
        if missing:
            raise DataFolderError(f"找不到文件：{'、'.join(missing)}")
        outcomes = sync(folder, list(files) if files else None, dry_run=dry_run, min_age=0 if files else 1.0,
                        confirm=confirm)
        report_error = ""
        if not dry_run and any(o.outcome == "merged" for o in outcomes):
            try:
                refresh_reports(folder)
            except (OSError, sqlite3.Error) as exc:  # the returns are already safely merged
                report_error = f"报表未能更新（{exc}）；收件已完成，腾出空间后运行 lixiao report"
    for o in outcomes:  # a 身份证号 typed into a 备注 must not reach a terminal or a log in clear
        o.reasons = [mask_ids_in_text(r) for r in o.reasons]
    if as_json:
        _json({"files": [o.as_json() for o in outcomes], "dry_run": dry_run})
    else:
        if not outcomes:
            console.print("收件箱（inbox/）中没有待处理的文件")
        for o in outcomes:
            console.print(f"[bold]{escape(o.file)}[/]：{OUTCOME_LABELS[o.outcome]}，记录 {o.applied}，"
                          f"拒绝 {o.refused}，冲突 {o.conflicts}" + (f"，回执 {o.receipt}" if o.receipt else ""))
            for reason in o.reasons[:10]:
                console.print(f"  [dim]{escape(strip_code(reason))}[/]")
        if dry_run:
            console.print("[yellow]演练模式（--dry-run）：没有写入任何内容[/]")
    if report_error:
        click.echo(f"注意：{mask_ids_in_text(report_error)}", err=True)
    if any(o.outcome in ("rejected", "quarantined", "held") or o.refused or o.conflicts for o in outcomes):
        sys.exit(1)


@main.command(epilog=_examples("  lixiao watch\n  lixiao watch --poll 5   # 网络共享文件夹"))
@click.option("--poll", type=click.FloatRange(0.5, 3600), help="轮询间隔秒数（网络共享文件夹上 inotify 不可靠时使用）")
@click.option("--settle", default=1.5, show_default=True, type=click.FloatRange(0.1, 600),
              help="文件大小和时间保持不变多少秒后才处理")
@click.option("--rescan", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="每隔多少秒重新扫描收件箱（防止遗漏事件）")
@click.pass_context
def watch(ctx: click.Context, poll: float | None, settle: float, rescan: float) -> None:
    """守护进程：监视收件箱，文件完整后自动处理；Ctrl-C 停止。Run the watch daemon."""
    from .daemon import run_daemon

    with _folder(ctx, write=True, watch=True) as folder:
        console.print(f"正在监视 {folder.root / 'inbox'}（日志：{folder.root / 'watch.log'}；按 Ctrl-C 停止）")
        run_daemon(folder, settle, rescan, poll)


@main.command(epilog=_examples("  lixiao report\n  xdg-open 2026离校/reports/index.html"))
@click.pass_context
def report(ctx: click.Context) -> None:
    """重新生成报表（离线网页和 离校进度.xlsx）。Regenerate reports/."""
    from lixiao.reports.build import render_report

    with _folder(ctx, write=True) as folder:
        built = render_report(folder.store, folder.flow, folder.root / "reports", folder.root / "templates")
    console.print(f"已生成报表（{built.students} 名学生，{built.files} 个文件）：{built.index}")
    console.print(f"Excel 报表：{built.excel}")


@main.command("set", epilog=_examples("  lixiao set 0803010103 degree_certificate passed --operator 张老师"))
@click.argument("student")
@click.argument("step")
@click.argument("status", type=click.Choice([s.value for s in Status if s is not Status.NA]))
@click.option("--remark", default="", help="备注")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def set_status(ctx: click.Context, student: str, step: str, status: str, remark: str, operator: str | None) -> None:
    """手工设置某学生某步骤的状态（检查前置条件，记入审计）。Set one step by hand."""
    with _folder(ctx, write=True) as folder:
        clearance = folder.clearance
        who, target = clearance.student(student), clearance.step(step)
        decision = clearance.set_step(who, target.code, Status(status), remark=remark, source="cli",
                                      operator=_operator(operator))
    if not decision.allowed:
        raise Refused(decision.reason)
    done = "未变（已是该状态）" if decision.unchanged else "已记录"
    console.print(f"{who.name}（{who.student_no}）{target.name}：{STATUS_LABELS[Status(status)]}，{done}")


@main.command(epilog=_examples("  lixiao status 0803010103\n  lixiao status 丁德卫 --json"))
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def status(ctx: click.Context, query: str, as_json: bool) -> None:
    """按学号、姓名或身份证号查询学生的离校记录及受阻原因。Show a student."""
    with _folder(ctx, write=False) as folder:
        record = folder.clearance.record(folder.clearance.student(query))
    if as_json:
        _json(record)
        return
    console.print(f"[bold]{record['name']}[/]  学号 {record['student_no']}  {record['gender']}  "
                  f"身份证号 {record['id_card']}")
    console.print(f"{record['college']}  {record['major']}  {record['class']}  "
                  f"住宿 {record['dorm'] or '无住宿信息'}{'  往届' if record['previous'] else ''}")
    console.print("[bold]离校记录[/]")
    current = None
    for step in record["steps"]:
        if step["checkpoint"] != current:
            current = step["checkpoint"]
            console.print(f"  {step['checkpoint_name']}")
        label = STATUS_LABELS[Status(step["status"])]
        tail = "  [yellow]限制已解除[/]" if step["waived"] else ""
        remark = f"  [dim]{step['remark']}[/]" if step["remark"] else ""
        console.print(f"    {MARKS[step['status']]} {step['step_name']}  {label}{tail}{remark}")
    console.print(f"全部完成：{'是' if record['complete'] else '否'}")
    grouped: dict[str, list[str]] = {}
    for item in record["blocked"]:
        grouped.setdefault(item["message"], []).append(item["step_name"])
    for message, names in grouped.items():
        console.print(f"[red]无法办理 {'、'.join(names)}：{message}[/]")


@main.command(epilog=_examples(
    "  lixiao waive 0801020227 pay_arrears --reason 欠费缓交 --evidence 缓交证明2026-031"))
@click.argument("student")
@click.argument("step")
@click.option("--reason", required=True, help="理由，如：欠费缓交")
@click.option("--evidence", default="", help="证明材料，如：缓交证明编号")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def waive(ctx: click.Context, student: str, step: str, reason: str, evidence: str, operator: str | None) -> None:
    """解除某学生某步骤的前置限制（缓交）。Lift a restriction."""
    with _folder(ctx, write=True) as folder:
        clearance = folder.clearance
        who, target = clearance.student(student), clearance.step(step)
        clearance.waive(who, target, reason, _operator(operator), evidence)
    console.print(f"已解除 {who.name}（{who.student_no}）“{target.name}”的限制（限制已关闭）")


@main.command(epilog=_examples("  lixiao unwaive 0801020227 pay_arrears"))
@click.argument("student")
@click.argument("step")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def unwaive(ctx: click.Context, student: str, step: str, operator: str | None) -> None:
    """恢复已解除的限制。Restore a lifted restriction."""
    with _folder(ctx, write=True) as folder:
        clearance = folder.clearance
        who, target = clearance.student(student), clearance.step(step)
        clearance.unwaive(who, target, _operator(operator))
    console.print(f"已恢复 {who.name}（{who.student_no}）“{target.name}”的限制（限制已开启）")


@main.command(epilog=_examples("  lixiao waivers"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def waivers(ctx: click.Context, as_json: bool) -> None:
    """已解除限制名单。All lifted restrictions."""
    with _folder(ctx, write=False) as folder:
        listed = folder.clearance.waiver_list()
    if as_json:
        _json(listed)
        return
    table = RichTable(title=f"已解除限制名单（{len(listed)} 人次）")
    for column in ("学号", "姓名", "院系", "班级", "离校点", "离校步骤", "步骤状态", "理由", "操作人", "时间"):
        table.add_column(column)
    for w in listed:
        table.add_row(w["student_no"], w["name"], w["college"], w["class"], w["checkpoint_name"], w["step_name"],
                      w["status"], w["reason"], w["operator"], w["created_at"])
    console.print(table)


KINDS = {"student": "名单", "status": "状态", "waiver": "解除限制", "session": "会话"}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@main.command(epilog=_examples("  lixiao history 0803010103"))
@click.argument("student")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def history(ctx: click.Context, student: str, as_json: bool) -> None:
    """某学生的全部审计记录。The audit events of one student."""
    with _folder(ctx, write=False) as folder:
        who = folder.clearance.student(student)
        events = folder.store.history(who.student_no)
        names = {s.code: s.name for s in folder.flow.all_steps()}
    if as_json:
        _json(events)
        return
    table = RichTable(title=f"{who.name}（{who.student_no}）的审计记录")
    for column in ("#", "时间", "类别", "步骤", "原值", "新值", "结果", "来源", "操作人", "说明"):
        table.add_column(column)
    for e in events:
        table.add_row(str(e["seq"]), e["at"], KINDS.get(e["kind"], e["kind"]), names.get(e["step"], e["step"]),
                      _short(e["old"]), _short(e["new"]), e["decision"], e["source"], e["operator"], e["detail"])
    console.print(table)


@main.command(epilog=_examples("  lixiao export 离校状态.xlsx\n  lixiao export matrix.json"))
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def export(ctx: click.Context, file: Path) -> None:
    """导出完整状态矩阵（.xlsx、.csv 或 .json）。Export the status matrix."""
    suffix = file.suffix.lower()
    if suffix not in (".xlsx", ".csv", ".json"):
        raise DataFolderError("导出文件名应以 .xlsx、.csv 或 .json 结尾")
    with _folder(ctx, write=False) as folder:
        if suffix == ".json":
            entries = folder.clearance.matrix()
            file.write_text(json.dumps(entries, ensure_ascii=False, indent=1), "utf-8")
            console.print(f"已导出 {len(entries)} 条到 {file}")
            return
        if suffix == ".xlsx":
            from lixiao.reports.excel import export_matrix

            board = folder.clearance.board()
            data, count = export_matrix(board, folder.session_name), len(board.codes)
        else:
            steps = folder.flow.all_steps()
            headers = [*IDENTITY, *(s.name for s in steps), "全部完成"]
            rows = []
            for s, statuses, _, complete in folder.clearance.student_matrix():
                row = [s.student_no, s.name, s.college, s.class_name, s.dorm, "是" if s.previous else ""]
                row += ["" if statuses[st.code] is Status.NA else statuses[st.code].label for st in steps]
                row.append("是" if complete else "否")
                rows.append(row)
            data, count = matrix_csv(headers, rows), len(rows)
    file.write_bytes(data)
    console.print(f"已导出 {count} 名学生到 {file}")


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal (a long verify streams half a million audit events)."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield advance


@main.command(epilog=_examples("  lixiao verify\n  lixiao verify --repair"))
@click.option("--repair", is_flag=True,
              help="修复能修复的：重新处理台账缺失的存档文件，按审计记录恢复被改动或删除的状态、解除限制和台账，"
                   "接受丢失的审计链尾部")
@click.pass_context
def verify(ctx: click.Context, repair: bool) -> None:
    """校验数据库、审计链（重放并与状态表核对）、存档文件、回执和收件箱。Verify integrity.

    发现损坏时数据库拒绝写入，直到 lixiao verify 再次通过。
    """
    from .integrity import BackupOnlyError, check_folder, record_findings, repair_folder
    from .locking import writer_lock

    with _folder(ctx, write=False) as folder:
        if repair:
            with writer_lock(folder.root, on_wait=_say_waiting):
                try:
                    with _progress("修复前校验") as advance:
                        done = repair_folder(folder, _operator(None), advance)
                except BackupOnlyError as exc:
                    raise Refused(str(exc)) from None
            for line in done or ["没有需要修复的内容"]:
                console.print(f"修复：{line}")
        with _progress("校验审计链") as advance:
            found = check_folder(folder, advance)
        record_findings(folder, found)
        events = folder.store.db.execute("SELECT count(*) FROM audit").fetchone()[0]
        archived = sum(1 for r in folder.store.ledger_rows() if r["outcome"] == "merged")
    if found.problems:
        for problem in found.problems:
            console.print(f"[red]{problem}[/]")
        if not found.damage:
            raise Refused(f"发现 {len(found.problems)} 个问题（数据库本身完好）")
        hint = "运行 lixiao verify --repair，或" if not repair else ""
        raise Refused(f"发现 {len(found.problems)} 个问题，数据库在问题解决前拒绝写入；{hint}"
                      "用 lixiao backup 的备份恢复（见 README“备份与恢复”）")
    console.print(f"校验通过：数据库完整，审计链 {events} 条记录连续无误且与状态、解除限制和台账一致，"
                  f"{archived} 个已合并文件的存档哈希一致")


@main.command(epilog=_examples("  lixiao backup /mnt/u盘/离校备份-0630.db"))
@click.argument("dest", type=click.Path(path_type=Path))
@click.pass_context
def backup(ctx: click.Context, dest: Path) -> None:
    """校验后在线备份数据库，并校验备份。Back up the store.

    数据库未通过 lixiao verify 的校验时不备份（损坏的备份无法用来恢复）。
    """
    from .integrity import check_folder, record_findings

    with _folder(ctx, write=False) as folder:
        with _progress("校验数据库") as advance:
            found = check_folder(folder, advance)
        record_findings(folder, found)
        if found.damage:
            for problem in found.damage:
                console.print(f"[red]{problem}[/]")
            raise Refused(f"数据库未通过校验（{len(found.damage)} 个问题），不备份；请先运行 lixiao verify --repair，"
                          "或用以前的备份恢复（见 README“备份与恢复”）")
        folder.store.backup_to(dest)
    console.print(f"已备份并校验：{dest}")


@main.command(epilog=_examples("  lixiao demo\n  lixiao demo /tmp/离校演示 --students 8500"))
@click.argument("directory", required=False, type=click.Path(path_type=Path), default=Path("lixiao-demo"))
@click.option("--students", "count", default=3000, show_default=True, type=click.IntRange(10, 100_000),
              help="合成学生人数")
@click.option("--seed", default=2026, show_default=True, help="随机种子")
def demo(directory: Path, count: int, seed: int) -> None:
    """用合成的学生演示完整流程。The whole cycle on a synthetic cohort."""
    from .demo import run_demo

    run_demo(directory, count, seed, console)


if __name__ == "__main__":
    main()
