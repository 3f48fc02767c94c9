"""lixiao's live-loop commands: the office directory, send, fetch."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table as RichTable

from lixiao.core.storage.offices import office_instances, parse_directory
from lixiao.sync.datafolder import DataFolderError, secret_key
from lixiao.sync.messages import OUTCOME_LABELS, strip_code

from .base import Refused, console, examples, open_data, operator_name, print_json, print_problems, read_input


@click.group()
def offices() -> None:
    """离校点通讯录：谁接收哪个离校点的工作簿（邮箱或共享文件夹）。"""


@offices.command("template", epilog=examples("  lixiao offices template 通讯录.xlsx"))
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def offices_template(ctx: click.Context, file: Path) -> None:
    """写出通讯录模板：每个离校点一行（已有的通讯录内容一并写入）。"""
    if file.suffix.lower() != ".xlsx":
        raise DataFolderError("模板文件名应以 .xlsx 结尾")
    from lixiao.core.clearance.issuance import issuable
    from lixiao.workbooks.directory import build_directory

    with open_data(ctx, write=False) as folder:
        instances = office_instances(issuable(folder.flow, folder.year), folder.store.colleges())
        known = {o.key: o for o in folder.store.offices()}
    if not instances:
        raise DataFolderError("还没有学生：按学院设置的离校点要先导入学生名单（lixiao students import）才能列出")
    rows = []
    for instance in instances:
        entry = known.get(instance.key)
        rows.append((instance.title, entry.contact if entry else "", "; ".join(entry.emails) if entry else "",
                     entry.share if entry else ""))
    file.write_bytes(build_directory(rows))
    console.print(f"已写出通讯录模板 {file}（{len(rows)} 个离校点）；填好后运行 lixiao offices import {file}")


@offices.command("import", epilog=examples("  lixiao offices import 通讯录.xlsx"))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def offices_import(ctx: click.Context, file: Path, operator: str | None) -> None:
    """导入通讯录（.xlsx 或 .csv）；有错的行逐行列出，整份不导入。"""
    from lixiao.core.clearance.issuance import issuable
    from lixiao.workbooks.tables import read_table

    table = read_table(read_input(file), file.name)
    with open_data(ctx, write=True) as folder:
        instances = office_instances(issuable(folder.flow, folder.year), folder.store.colleges())
        result = parse_directory(table.headers, table.rows, instances)
        print_problems(result.warnings, list(result.problems))
        if result.problems:
            raise Refused("通讯录有错误，没有导入；请改正后重新导入")
        with folder.store.transaction():
            added, changed = folder.store.set_offices(result.entries, f"offices:{file.name}", operator_name(operator))
    console.print(f"通讯录已导入：新增 {added}，更新 {changed}，未变 {len(result.entries) - added - changed}")


@offices.command("show", epilog=examples("  lixiao offices show\n  lixiao offices show --json"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def offices_show(ctx: click.Context, as_json: bool) -> None:
    """列出每个离校点的投递方式（邮箱、共享文件夹）和最近一次投递。"""
    from lixiao.sync.live.delivery import routes

    with open_data(ctx, write=False) as folder:
        found = routes(folder)
        last = folder.store.last_deliveries()
    if as_json:
        print_json({"offices": [{**r.entry.as_json(), "title": r.instance.title,
                                 "share_path": str(r.share) if r.share else "", "mail": list(r.emails),
                                 "last_delivery": last[r.key][0] if r.key in last else ""} for r in found]})
        return
    table = RichTable(title="离校点通讯录")
    for column in ("离校点", "联系人", "邮箱", "共享文件夹", "最近投递"):
        table.add_column(column)
    for r in found:
        when = last.get(r.key)
        table.add_row(escape(r.instance.title), escape(r.entry.contact), escape("; ".join(r.emails) or "—"),
                      escape(str(r.share) if r.share else "—"),
                      (when[0][:16].replace("T", " ") + ("" if when[3] else " 失败")) if when else "—")
    console.print(table)


@click.command(epilog=examples("  lixiao send\n  lixiao send --checkpoint certificates\n  lixiao send --resend"))
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="CODE", help="只投递这些离校点（可重复）")
@click.option("--resend", is_flag=True, help="已投递过的工作簿也重新发送")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def send(ctx: click.Context, checkpoints: tuple[str, ...], resend: bool, as_json: bool) -> None:
    """把每个离校点的当前工作簿投递到它的邮箱或共享文件夹（前置条件有变化的先签发新版）。

    还没有工作簿的离校点先签发第 1 版；名单或前置条件变了的，签发新版后投递；签发后状态有变化、
    还没有投递出去的工作簿，也先签发新版（投递的总是当前状态，交回时不会因此产生冲突）。
    """
    from lixiao.sync.live.delivery import send_offices

    with open_data(ctx, write=True) as folder:
        report = send_offices(folder, list(checkpoints), resend=resend)
    if as_json:
        print_json({"issued": [str(i.path) for i in report.issued],
                    "deliveries": [{"office": o, "channel": c, "target": t, "ok": ok, "note": n}
                                   for o, c, t, ok, n in report.lines]})
    else:
        if report.issued:
            console.print(f"签发了新版工作簿 {len(report.issued)} 个")
        table = RichTable(title="投递结果")
        for column in ("离校点", "方式", "目标", "结果"):
            table.add_column(column)
        for office, channel, target, ok, note in report.lines:
            mark = "[green]✓[/] " if ok else "[red]✗[/] "
            table.add_row(escape(office), channel, escape(target), mark + escape(note))
        console.print(table)
    if report.failed:
        raise Refused(f"{report.failed} 个离校点投递失败，见上表；改正后重新运行 lixiao send")


@click.command(epilog=examples("  lixiao fetch\n  lixiao fetch --json"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def fetch(ctx: click.Context, as_json: bool) -> None:
    """从 IMAP 邮箱收取交回的工作簿一次，处理并回复回执（lixiao watch 会定时自动收取）。"""
    from lixiao.sync.live.batch import recover_staging, refresh_reports
    from lixiao.sync.live.loop import LiveLoop
    from lixiao.sync.live.mail import fetch_mail
    from lixiao.sync.live.settings import mail_settings

    with open_data(ctx, write=True) as folder:
        mail = mail_settings(folder.root)
        if mail is None:
            raise DataFolderError("lixiao.toml 中没有 [mail] 设置：见 docs/coordinator-guide.md 的“学校邮箱”一节")
        recover_staging(folder)
        live = LiveLoop(folder, logging.getLogger("lixiao.watch"))
        result = fetch_mail(folder, mail, secret_key(folder.root), live.send_latest)
        if any(o.outcome == "merged" for o in result.outcomes):
            refresh_reports(folder)
    if as_json:
        print_json({"messages": result.messages, "duplicates": result.duplicates, "replies": result.replies,
                    "files": [o.as_json() for o in result.outcomes], "errors": result.errors})
        return
    console.print(f"收取新邮件 {result.messages} 封（已处理过的 {result.duplicates} 封），回复 {result.replies} 封")
    for o in result.outcomes:
        console.print(f"[bold]{escape(o.file)}[/]：{OUTCOME_LABELS[o.outcome]}，记录 {o.applied}，拒绝 {o.refused}，"
                      f"冲突 {o.conflicts}")
        for reason in o.reasons[:5]:
            console.print(f"  [dim]{escape(strip_code(reason))}[/]")
    for error in result.errors:
        console.print(f"[red]{escape(error)}[/]")
    if result.errors:
        raise Refused("有回执邮件未能发出，见上文")


COMMANDS = (offices, send, fetch)
