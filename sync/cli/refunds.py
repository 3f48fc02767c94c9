"""lixiao refunds: 财务退费查询 — every student's 退费状态, by college and status (the manual's 统计查询)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table as RichTable

from lixiao.core.clearance.refunds import NO_REFUND_STEP, REFUND_WORDS, refund_counts, refund_lines
from lixiao.core.manual.model import Status
from lixiao.sync.datafolder import DataFolderError

from .base import Refused, console, examples, open_data, print_json

_BY_WORD = {word: status for status, word in REFUND_WORDS.items()}


@click.command(epilog=examples("  lixiao refunds\n  lixiao refunds --college 机电工程学院 --status 未退费\n"
                               "  lixiao refunds --json"))
@click.option("--college", help="只列出这个学院")
@click.option("--status", "state", type=click.Choice(list(_BY_WORD)), help="只列出这种退费状态")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def refunds(ctx: click.Context, college: str | None, state: str | None, as_json: bool) -> None:
    """财务退费查询：各学院、各退费状态的人数和名单。"""
    with open_data(ctx, write=False) as folder:
        year = folder.year
        step = folder.flow.refund_step(year)
        if step is None:
            raise Refused(NO_REFUND_STEP)
        lines = refund_lines(folder.flow, year, folder.store.students(), folder.store.step_rows(step.code), step)
    if college:
        if college not in {line.college for line in lines}:
            known = "、".join(sorted({x.college for x in lines}))
            raise DataFolderError(f"没有学院“{college}”的学生需要退费（可选：{known}）")
        lines = [line for line in lines if line.college == college]
    counts = refund_counts(lines)
    if state:
        lines = [line for line in lines if line.status is _BY_WORD[state]]
    if as_json:
        print_json({"step": step.code, "counts": {c: {s.value: n for s, n in k.items()} for c, k in counts.items()},
                    "students": [{"student_no": x.student_no, "name": x.name, "college": x.college, "group": x.group,
                                  "status": x.status.value, "refund": x.word, "remark": x.remark,
                                  "updated_at": x.updated_at} for x in lines]})
        return
    summary = RichTable(title=f"财务退费查询（{step.name}）")
    for column in ("学院", *REFUND_WORDS.values(), "合计"):
        summary.add_column(column)
    for name, count in counts.items():
        summary.add_row(escape(name), *(str(count.get(s, 0)) for s in REFUND_WORDS), str(sum(count.values())))
    console.print(summary)
    listing = RichTable(title=f"名单（{len(lines)} 人）")
    for column in ("学号", "姓名", "学院", "班级/专业", "退费状态", "备注"):
        listing.add_column(column)
    for x in lines:
        colour = {Status.PASSED: "green", Status.FAILED: "red"}.get(x.status, "yellow")
        listing.add_row(x.student_no, escape(x.name), escape(x.college), escape(x.group), f"[{colour}]{x.word}[/]",
                        escape(x.remark))
    console.print(listing)


COMMANDS = (refunds,)
