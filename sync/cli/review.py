"""lixiao review: the 待核对 queue — list open items, resolve one."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table as RichTable

from lixiao.sync.datafolder import DataFolder, DataFolderError
from lixiao.sync.messages import strip_code

from .base import Refused, console, examples, open_data, operator_name, print_json


@click.group(invoke_without_command=True, epilog=examples(
    "  lixiao review\n  lixiao review resolve C12 keep --reason 已与宿管核实，数据库正确\n"
    "  lixiao review resolve T34 take --reason 前置条件现已满足\n"
    "  lixiao review resolve H7 take --reason 已电话确认是水电王老师代交"))
@click.pass_context
def review(ctx: click.Context) -> None:
    """待核对：冲突、被拒绝的勾选、被拒绝或待确认的文件、待核对发件人的文件；逐项处理。"""
    if ctx.invoked_subcommand is None:
        ctx.invoke(review_list)


@review.command("list", epilog=examples("  lixiao review list\n  lixiao review list --json"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def review_list(ctx: click.Context, as_json: bool = False) -> None:
    """列出尚未处理的待核对项（已处理、或数据库已自行解决的不再列出）。"""
    with open_data(ctx, write=False) as folder:
        from lixiao.core.clearance.review import open_items

        items = open_items(folder.clearance, limit=100_000)
    if as_json:
        print_json({"items": [{"id": i.id, "kind": i.kind, "student_no": i.student_no, "name": i.name,
                               "step": i.step, "summary": i.summary, "file": i.file_name, "at": i.created_at}
                              for i in items]})
        return
    if not items:
        console.print("没有待核对项")
        return
    table = RichTable(title=f"待核对（{len(items)} 项）")
    for column in ("编号", "类别", "学号", "姓名", "离校步骤", "内容", "文件"):
        table.add_column(column)
    for i in items:
        table.add_row(i.id, i.kind_label, i.student_no, escape(i.name), escape(i.step_name), escape(i.summary),
                      escape(i.file_name))
    console.print(table)
    console.print("处理：lixiao review resolve 编号 keep|take|dismiss --reason 理由"
                  "（冲突：keep 保留数据库的值 / take 采用交回的值；被拒绝的勾选：take 重新检查后记录 / dismiss；"
                  "被拒绝的文件、待核对发件人的文件：dismiss 表示已核对；"
                  "待确认的文件：take 确认后合并 / dismiss 不合并）")


@review.command("resolve", epilog=examples("  lixiao review resolve C12 keep --reason 已与宿管核实"))
@click.argument("item_id", metavar="ID")
@click.argument("action", type=click.Choice(["keep", "take", "dismiss"]))  # core.review.Action
@click.option("--reason", required=True, help="处理理由（记入审计）")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def review_resolve(ctx: click.Context, item_id: str, action: str, reason: str, operator: str | None) -> None:
    """处理一个待核对项（记入审计）。"""
    with open_data(ctx, write=True) as folder:
        from lixiao.core.clearance.review import Action, resolve

        done = resolve(folder.clearance, item_id, Action(action), reason, operator_name(operator),
                       confirm_held=lambda item: _confirm_held(folder, item.file_hash))
    console.print(escape(done))


def _confirm_held(folder: DataFolder, digest_hex: str) -> str:
    """``take`` on a held return: merge it as ``lixiao sync --confirm held/FILE`` does (the same checks)."""
    from lixiao.sync.live.batch import sync
    from lixiao.sync.takeback.inbox import hash_regular
    from lixiao.sync.takeback.outcomes import HELD_FOLDER

    held = folder.root / HELD_FOLDER
    candidates = sorted(p for p in held.iterdir() if p.is_file() and not p.name.endswith(".txt")) \
        if held.is_dir() else []
    path = next((p for p in candidates if hash_regular(p) == digest_hex), None)
    if path is None:
        raise DataFolderError(f"held/ 中找不到这个待确认的文件（内容哈希 {digest_hex[:12]}）；它可能被移走了，"
                              "请放回 held/ 后重试")
    [outcome] = sync(folder, [path], confirm=True, min_age=0)  # held/ holds lixiao's own complete copies
    if outcome.outcome != "merged":
        raise Refused(f"{outcome.file} 没有合并：{'；'.join(strip_code(r) for r in outcome.reasons[:3])}")
    return f"已合并：记录 {outcome.applied}，拒绝 {outcome.refused}，冲突 {outcome.conflicts}"


COMMANDS = (review,)
