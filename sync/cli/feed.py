"""lixiao feed: the library, finance and loan exports, and the students a whole-school export left out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from lixiao.core.feeds.exports import feed_label, parse_feed
from lixiao.core.manual.model import Status
from lixiao.sync.datafolder import DataFolderError

from .base import Refused, console, examples, open_data, operator_name, read_input

if TYPE_CHECKING:
    from lixiao.core.feeds.apply import FeedReport


@click.command(epilog=examples("  lixiao feed library 图书馆导出.xlsx\n  lixiao feed finance 欠费.csv\n"
           "  lixiao feed loans 国开行确认.xlsx --loan national\n"
           "  lixiao feed loans 潇湘确认.xlsx --loan national --lender 12649"))
@click.argument("kind", type=click.Choice(["library", "finance", "loans"]))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--loan", type=click.Choice(["national", "local"]), help="贷款名单没有“贷款类型”列时指明种类")
@click.option("--lender", help="贷款名单没有“经办单位”列时指明经办单位：10534（校本部）或 12649（潇湘）")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def feed(ctx: click.Context, kind: str, file: Path, loan: str | None, lender: str | None,
         operator: str | None) -> None:
    """导入图书馆（学号,借阅册数,欠费）、财务（学号,欠费金额）或贷款系统的数据。"""
    from lixiao.workbooks.tables import read_table

    table = read_table(read_input(file), file.name)
    parsed = parse_feed(kind, table.headers, table.rows, loan or "", lender or "")
    with open_data(ctx, write=True) as folder:
        absent = _absent_setting(folder.root)
        report = folder.clearance.apply_feed(parsed.entries, source=f"feed:{kind}:{file.name}",
                                             operator=operator_name(operator), absent=absent)
        receipt = _feed_receipt(folder.root, kind, file.name, report, absent) if report.absent else None
    console.print(f"已通过 {report.passed}，未通过 {report.failed}，未变 {report.unchanged}")
    for line in report.partial:
        console.print(f"[yellow]部分确认：{escape(line)}[/]")
    if report.absent:
        console.print(f"[yellow]{escape(absent_summary(report, absent))}；名单见 {receipt}[/]")
        listed = report.absent if absent else report.absent_pending
        for student in listed[:20]:
            console.print(f"  {student.student_no} {escape(student.name)}（{escape(student.class_name)}）")
        if len(listed) > 20:
            console.print(f"  …… 另有 {len(listed) - 20} 名")
        if report.absent_pending and absent is None:
            console.print(f"[yellow]{escape(ABSENT_HINT)}[/]")
    if report.reverted:
        console.print(f"[yellow]{len(report.reverted)} 名学生由“已通过”变为“未通过”（已记入审计）：[/]")
        for line in report.reverted:
            console.print(f"  {line}")
    trouble = parsed.problems + [f"找不到学生：{u}" for u in report.unknown] + report.refused
    for line in trouble:
        console.print(f"  [red]{line}[/]")
    if trouble:
        raise Refused(f"{len(trouble)} 行未能应用（见上）")


ABSENT_HINT = ("仍为未办理的学生会挡住领证。如果这份导出本应覆盖全校，请核对导出是否完整；如果不在导出中就表示"
               "没有借书或欠费，可在数据文件夹的 lixiao.toml 中加上\n  [feeds]\n  absent = \"passed\"    "
               "# 不在导出中即记为已通过；写 \"failed\" 则记为未通过\n然后重新导入这份导出")


def absent_summary(report: FeedReport, absent: Status | None) -> str:
    """What became of the roster students an export left out, counted by what their step actually is now."""
    head = f"学生名单中有 {len(report.absent)} 名学生不在这份导出中"
    if absent is not None:
        return f"{head}，已按设置记为“{absent.label}”（lixiao.toml 的 [feeds] absent）"
    kept: dict[str, int] = {}
    for status in report.absent_kept.values():
        kept[status.label] = kept.get(status.label, 0) + 1
    parts = [f"{len(report.absent_pending)} 名仍为未办理"] if report.absent_pending else []
    if kept:
        what = "、".join(f"{label} {count} 名" for label, count in sorted(kept.items()))
        parts.append(f"{len(report.absent_kept)} 名保持原来的状态（{what}，本次未改动）")
    return f"{head}：{'；'.join(parts)}"


def _absent_setting(root: Path) -> Status | None:
    """[feeds] absent: what a student missing from a whole-school export is recorded as (None: untouched)."""
    import tomllib

    from lixiao.sync.datafolder import SETTINGS

    try:
        value = tomllib.loads((root / SETTINGS).read_text("utf-8")).get("feeds", {}).get("absent", "untouched")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    choices = {"untouched": None, "passed": Status.PASSED, "failed": Status.FAILED}
    if value not in choices:
        raise DataFolderError(f"{SETTINGS} 中 [feeds] absent 只能是 untouched、passed 或 failed，现为 {value!r}")
    return choices[value]


def _feed_receipt(root: Path, kind: str, name: str, report: FeedReport, absent: Status | None) -> Path:
    """receipts/数据源-KIND-TIME.txt: the students of the roster the export left out."""
    from datetime import datetime

    from lixiao.core.storage.files import write_atomically

    path = root / "receipts" / f"数据源-{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.txt"
    lines = [f"数据源：{feed_label(kind)}（{name}）", absent_summary(report, absent), "",
             "学号\t姓名\t院系\t班级\t现在的状态"]
    lines += [f"{s.student_no}\t{s.name}\t{s.college}\t{s.class_name}\t"
              f"{(absent or report.absent_kept.get(s.student_no, Status.PENDING)).label}" for s in report.absent]
    write_atomically(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


COMMANDS = (feed,)
