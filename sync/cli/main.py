"""The ``lixiao`` command line: each command opens the data folder, calls one library function, reports."""


from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table as RichTable

from lixiao.core.manual import rules
from lixiao.core.manual.flow import PRESETS, flow_to_dict, load_preset
from lixiao.core.manual.identity import mask_ids_in_text
from lixiao.core.manual.model import SPLITS, STATUS_LABELS, Flow, Status
from lixiao.sync.datafolder import DataFolder, DataFolderError, find_folder, init_folder
from lixiao.sync.messages import OUTCOME_LABELS, strip_code

from . import codes, feed, offices, records, refunds, review
from .base import (
    LixiaoGroup,
    Refused,
    StatusWord,
    console,
    examples,
    open_data,
    operator_name,
    print_json,
    print_problems,
    read_input,
)

if TYPE_CHECKING:
    from lixiao.sync.live.delivery import Route


@click.group(cls=LixiaoGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data", metavar="DIR", help="数据文件夹（默认：$LIXIAO_DATA，或当前文件夹及其上级）")
@click.version_option(package_name="lixiao")
@click.pass_context
def main(ctx: click.Context, data: str | None) -> None:
    """lixiao 数字离校：用 Excel 工作簿办理毕业生离校手续。

    一个数据库，各离校点一份勾选工作簿；lixiao 命令 --help 显示每个命令的用法和示例。
    """
    ctx.ensure_object(dict)
    ctx.obj["data"] = data


@main.command(epilog=examples("  lixiao init 2026离校 --flow undergrad --session 2026届本科毕业生离校"))
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--flow", "flow_name", default="undergrad", show_default=True,
              help=f"预置流程（{'|'.join(PRESETS)}）或流程 .toml 文件")
@click.option("--session", help="离校会话名称，如 2026届本科毕业生离校")
@click.option("--year", type=int, help="届别年份（默认取会话名称中的年份或今年）")
def init(directory: Path, flow_name: str, session: str | None, year: int | None) -> None:
    """创建数据文件夹（设置、可编辑的流程、数据库、收发文件夹）。"""
    folder = init_folder(directory, flow_name, session, year)
    try:
        console.print(f"已创建数据文件夹 {directory}（{folder.session_name}，流程：{folder.flow.name}）")
        console.print(f"下一步：lixiao --data {directory} students import 学生名单.xlsx")
    finally:
        folder.close()


@main.group()
def students() -> None:
    """学生名单：导入与模板。"""


@students.command("template", epilog=examples("  lixiao students template 学生名单模板.xlsx"))
@click.argument("file", type=click.Path(path_type=Path))
def students_template(file: Path) -> None:
    """写出带标准中文表头的空白学生名单。"""
    if file.suffix.lower() != ".xlsx":
        raise DataFolderError("模板文件名应以 .xlsx 结尾")
    from lixiao.workbooks.roster import build_roster_template

    file.write_bytes(build_roster_template())
    console.print(f"已写出名单模板 {file}（第 2 行是示例，导入前请删除）")


@students.command("import", epilog=examples(
    "  lixiao students import 学生名单.xlsx\n  lixiao students import 名单.csv --skip-bad"))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--skip-bad", is_flag=True, help="导入正确的行，跳过有错的行（默认：有错则全部不导入）")
@click.option("--numeric-ids", is_flag=True,
              help="学号列是数字格式、且本届学号本来就没有开头的 0 时，按数字读入"
                   "（默认只接受与文本学号位数相同的数字学号）")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def students_import(ctx: click.Context, file: Path, skip_bad: bool, numeric_ids: bool, operator: str | None) -> None:
    """导入学生名单（.xlsx 或 .csv）；有错的行逐行列出。"""
    from lixiao.core.manual.roster import validate_roster
    from lixiao.workbooks.tables import read_table

    table = read_table(read_input(file), file.name)
    with open_data(ctx, write=True) as folder:
        result = validate_roster(table.headers, table.rows, folder.flow.needs_class, numeric_ids)
        print_problems(result.warnings, list(result.problems))
        if result.problems and not skip_bad:
            raise Refused("名单有错误，没有导入任何学生；请改正后重新导入，或加 --skip-bad 只导入正确的行")
        counts = folder.store.upsert_students(result.students, source=f"roster:{file.name}",
                                              operator=operator_name(operator))
        reopened = folder.clearance.recheck_lenders(f"roster:{file.name}", operator_name(operator)) \
            if counts["updated"] else []
    console.print(f"导入完成：新增 {counts['added']}，更新 {counts['updated']}，未变 {counts['unchanged']}")
    for line in reopened:  # a loan's lenders changed: the pass no longer has every confirmation
        console.print(f"[yellow]注意：{escape(line)}[/]")
    if result.problems:
        raise Refused(f"跳过了 {len(result.problems)} 行有错误的学生")


@main.group()
def flow() -> None:
    """离校流程：离校点、步骤、前置条件。"""


@flow.command("show", epilog=examples("  lixiao flow show\n  lixiao flow show --preset graduate --json"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.option("--preset", type=click.Choice(PRESETS), help="显示预置流程（无需数据文件夹）")
@click.pass_context
def flow_show(ctx: click.Context, as_json: bool, preset: str | None) -> None:
    """显示离校点、步骤、适用对象、批量方式和前置条件。"""
    if preset:
        shown, year = load_preset(preset), 2026
    else:
        with open_data(ctx, write=False) as folder:
            shown, year = folder.flow, folder.year
    if as_json:
        print_json(flow_to_dict(shown, year))
    else:
        _print_flow(shown, year)


APPLIES = {"all": "全部学生", "national_loan": "国家助学贷款学生", "local_loan": "生源地贷款学生",
           "switch": "借用交换机的学生", "withheld": "暂缓发证的学生", "previous": "往届生",
           "withheld_degree": "暂缓发放学位证的学生", "withheld_diploma": "暂缓发放毕业证的学生"}
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


@main.command(epilog=examples(
    "  lixiao issue\n  lixiao issue --checkpoint utilities --checkpoint dorm\n"
    "  lixiao issue --checkpoint college --split class"))
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="CODE",
              help="只签发这些离校点（可多次给出；默认：所有需要勾选的离校点和特殊离校点）")
@click.option("--split", type=click.Choice(SPLITS), help="再按学院、班级或宿舍拆成多个文件")
@click.pass_context
def issue(ctx: click.Context, checkpoints: tuple[str, ...], split: str | None) -> None:
    """为各离校点签发勾选工作簿到 outbox/（再次签发版本加一）。"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from lixiao.sync.issuing import issue_workbooks, plan_each

    with open_data(ctx, write=True) as folder:
        plans = plan_each(folder, list(checkpoints), split)
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


@main.command("sync", epilog=examples(
    "  lixiao sync\n  lixiao sync --dry-run --json\n  lixiao sync ~/下载/水电通信中心离校点-第1版.xlsx"))
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="只报告将会发生什么，不写入任何内容")
@click.option("--confirm", is_flag=True,
              help="确认 held/ 中待确认的文件（撤销过多而暂缓的交回）并使其生效；须给出文件")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def sync_command(ctx: click.Context, files: tuple[Path, ...], dry_run: bool, confirm: bool, as_json: bool) -> None:
    """处理收件箱中交回的工作簿：核验、合并、存档、回执。

    撤销超过 [sync] max_revocations 个已通过格子的交回会暂缓（held/），核对后用 --confirm 使其生效。
    """
    if confirm and not files:
        raise click.UsageError("--confirm 需要给出 held/ 中的文件，如 lixiao sync --confirm held/水电.xlsx")
    from lixiao.sync.live.batch import refresh_reports, sync
    from lixiao.sync.takeback.inbox import sync_settings

    with open_data(ctx, write=True) as folder:
        folders = [str(f) for f in files if f.is_dir()]
        if folders:
            raise DataFolderError(f"{'、'.join(folders)} 是文件夹；请给出文件，或把文件放入 inbox/ 后运行 lixiao sync")
        missing = [str(f) for f in files if not f.is_file() and not f.is_symlink()]
        if missing:
            raise DataFolderError(f"找不到文件：{'、'.join(missing)}")
        problems: list[str] = []
        outcomes = sync(folder, list(files) if files else None, dry_run=dry_run, min_age=0 if files else 1.0,
                        confirm=confirm, problems=problems)
        shares = not files and any(r.share for r in _routes(folder))
        report_error = ""
        if not dry_run and any(o.outcome == "merged" for o in outcomes) and sync_settings(folder.root).reports:
            try:
                refresh_reports(folder)
            except (OSError, sqlite3.Error) as exc:  # the returns are already safely merged
                report_error = f"报表未能更新（{exc}）；收件已完成，腾出空间后运行 lixiao report"
    for o in outcomes:  # a 身份证号 typed into a 备注 must not reach a terminal or a log in clear
        o.reasons = [mask_ids_in_text(r) for r in o.reasons]
    if as_json:
        print_json({"files": [o.as_json() for o in outcomes], "dry_run": dry_run, "problems": problems})
    else:
        if not outcomes:
            console.print("收件箱（inbox/）和各离校点的“交回”文件夹中都没有待处理的文件" if shares
                          else "收件箱（inbox/）中没有待处理的文件")
        for problem in problems:
            console.print(f"[red]注意：{escape(problem)}[/]")
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


@main.command(epilog=examples("  lixiao watch\n  lixiao watch --poll 5   # 网络共享文件夹\n"
                              "  lixiao watch --unit | sudo tee /etc/systemd/system/lixiao-watch.service\n"
                              "  lixiao watch --check   # 监控/cron：正常退出码 0，否则 1"))
@click.option("--poll", type=click.FloatRange(0.5, 3600), help="轮询间隔秒数（网络共享文件夹上 inotify 不可靠时使用）")
@click.option("--settle", default=1.5, show_default=True, type=click.FloatRange(0.1, 600),
              help="文件大小和时间保持不变多少秒后才处理")
@click.option("--rescan", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="每隔多少秒重新扫描收件箱（防止遗漏事件）")
@click.option("--unit", is_flag=True, help="不启动守护进程，而是打印本数据文件夹的 systemd 服务单元（见协调人指南）")
@click.option("--check", is_flag=True, help="不启动守护进程，而是用一行报告它是否正常（退出码 0 正常，1 异常）")
@click.option("--json", "as_json", is_flag=True, help="与 --check 一起使用：输出 JSON")
@click.pass_context
def watch(ctx: click.Context, poll: float | None, settle: float, rescan: float, unit: bool, check: bool,
          as_json: bool) -> None:
    """守护进程：监视收件箱，文件完整后自动处理；Ctrl-C 停止。

    --unit 打印 systemd 单元（其余选项写入 ExecStart），--check 检查正在运行的守护进程。
    """
    from lixiao.sync.live.daemon import run_daemon
    from lixiao.sync.live.service import check_health, render_unit, watch_arguments, watch_settings

    if (unit and check) or (as_json and not check):
        raise click.UsageError("--unit 与 --check 只能选一个；--json 只能与 --check 一起使用")
    if unit:
        root = find_folder(ctx.obj.get("data"))
        made = render_unit(root, watch_arguments(poll, settle, rescan), shares=_share_paths(root))
        click.echo(made.text, nl=False)
        for note in made.notes:
            click.echo(f"注意：{note}", err=True)
        return
    if check:
        health = check_health(find_folder(ctx.obj.get("data")))
        print_json(health.as_json()) if as_json else click.echo(health.line)
        sys.exit(0 if health.healthy else 1)
    with open_data(ctx, write=True, watch=True) as folder:
        settings = watch_settings(folder.root)  # a wrong [watch] value is refused before the daemon starts
        console.print(f"正在监视 {folder.root / 'inbox'}（日志：{folder.root / 'watch.log'}；按 Ctrl-C 停止）")
        run_daemon(folder, settle, rescan, poll, settings)


def _routes(folder: DataFolder) -> list[Route]:
    from lixiao.sync.live.delivery import routes

    return routes(folder)


def _share_paths(root: Path) -> list[Path]:
    """The share root and every office's shared folder (the service unit makes them writable)."""
    from lixiao.sync.datafolder import open_folder
    from lixiao.sync.live.delivery import routes
    from lixiao.sync.live.settings import delivery_settings

    folder = open_folder(root, write=False)
    try:
        settings = delivery_settings(root)
        found = [r.share for r in routes(folder, settings) if r.share is not None]
        return ([settings.share_root] if settings.share_root else []) + found
    finally:
        folder.close()


@main.command(epilog=examples("  lixiao report\n  xdg-open 2026离校/reports/index.html\n  lixiao report --public\n"
                              "  lixiao codes slips 查询码单/   # 把查询码单交给辅导员"))
@click.option("--public/--no-public", default=None,
              help="从此一并生成（或不再生成）可公开的 reports/public/离校查询.html：学生凭学号和查询码只能看到本人"
                   "记录；开启后每次更新报表（含 lixiao sync 和 lixiao watch）都会重新生成")
@click.option("--iterations", type=click.IntRange(1000, 10_000_000),
              help="查询页的密钥派生轮数（默认 20000；越大越难猜，首次生成越慢）")
@click.pass_context
def report(ctx: click.Context, public: bool | None, iterations: int | None) -> None:
    """重新生成报表（离线网页和 离校进度.xlsx）。"""
    from lixiao.reports.build import render_report
    from lixiao.sync.publishing import choose_public, public_setting, publish_public_page

    with open_data(ctx, write=True) as folder:
        built = render_report(folder.store, folder.flow, folder.root / "reports", folder.root / "templates")
        console.print(f"已生成报表（{built.students} 名学生，{built.files} 个文件）：{built.index}")
        console.print(f"Excel 报表：{built.excel}")
        if public is not None or iterations:
            choose_public(folder.root, public_setting(folder.root).publish if public is None else public, iterations)
        if not public_setting(folder.root).publish:
            if public is False:
                console.print("查询页不再随报表更新（已发布的 reports/public/ 请自行从网站撤下）")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("加密每名学生的离校记录", total=None)
            made = publish_public_page(folder, lambda done, total: bar.update(task, completed=done, total=total))
    if made is not None:
        console.print(f"可公开的查询页：{made.page}（{made.records} 名学生，本次派生密钥 {made.derived} 个）；"
                      "只把 reports/public/ 发布到校内网（https），其余报表仅供管理人员。学生凭查询码查询："
                      "lixiao codes slips 目录 生成各班查询码单，交辅导员发给学生")


@main.command("set", epilog=examples("  lixiao set 0803010103 清理电费 已通过 --operator 张老师\n"
                                     "  lixiao set 0803010103 归还图书 未通过 --remark 图书未还\n"
                                     "  lixiao set 丁德卫 degree_certificate ✓"))
@click.argument("student", metavar="学生")
@click.argument("step", metavar="步骤")
@click.argument("status", metavar="状态", type=StatusWord())
@click.option("--remark", default="", help="备注（未通过请写明原因，学生查询时能看到）")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def set_status(ctx: click.Context, student: str, step: str, status: str, remark: str, operator: str | None) -> None:
    """手工设置某学生某步骤的状态（检查前置条件，记入审计）。

    学生：学号、姓名或身份证号；步骤：步骤名称（如 清理电费）或代码（lixiao flow show 列出）；
    状态：已通过、未通过、未办理、可办可不办（也可写 ✓ ✗ ○ ↓，或 passed、failed、pending、optional）。
    """
    with open_data(ctx, write=True) as folder:
        clearance = folder.clearance
        who, target = clearance.student(student), clearance.step(step)
        decision = clearance.set_step(who, target.code, Status(status), remark=remark, source="cli",
                                      operator=operator_name(operator))
        standing = [] if Status(status) is Status.PASSED else \
            rules.passed_dependents(folder.flow, target.code, clearance.statuses(who.student_no))
    if not decision.allowed:
        raise Refused(decision.reason)
    done = "未变（已是该状态）" if decision.unchanged else "已记录"
    console.print(f"{who.name}（{who.student_no}）{target.name}：{STATUS_LABELS[Status(status)]}，{done}")
    if Status(status) is Status.FAILED and not remark.strip():
        console.print("[yellow]注意：未通过没有写原因；请用 --remark 写明（如“图书未还”），学生查询时能看到[/]")
    if standing and not decision.unchanged:
        console.print(f"[yellow]注意：{'、'.join(s.name for s in standing)} 已通过，而它们的前置条件“{target.name}”"
                      "现在未满足；已通过的记录不会自动撤销，如需撤销请逐项 lixiao set[/]")


for _command in (*feed.COMMANDS, *records.COMMANDS, *offices.COMMANDS, *review.COMMANDS,
                 *refunds.COMMANDS, *codes.COMMANDS):
    main.add_command(_command)


if __name__ == "__main__":
    main()
