"""lixiao's record commands: a student's status, waivers, history, export, verify, backup, demo."""


from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import click
from rich.table import Table as RichTable

from lixiao.core.clearance.clearance import StudentRecord
from lixiao.core.clearance.refunds import REFUND_WORDS
from lixiao.core.feeds.exports import feed_label
from lixiao.core.manual.identity import mask_id_card, mask_ids_in_text
from lixiao.core.manual.model import FLAG_COLUMNS, STATUS_LABELS, Status
from lixiao.core.storage.chain import AuditEvent
from lixiao.sync.datafolder import DataFolderError
from lixiao.sync.locking import writer_lock
from lixiao.workbooks.matrix import IDENTITY, matrix_csv

from .base import (
    MARKS,
    Refused,
    console,
    examples,
    open_data,
    operator_name,
    print_json,
    say_waiting,
)


@click.command(epilog=examples("  lixiao status 0803010103\n  lixiao status 丁德卫 --json"))
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def status(ctx: click.Context, query: str, as_json: bool) -> None:
    """按学号、姓名或身份证号查询学生的离校记录及受阻原因。"""
    with open_data(ctx, write=False) as folder:
        record = _masked_record(folder.clearance.record(folder.clearance.student(query)))
        refund_step = folder.flow.refund_step(folder.year)
    refund = next((s for s in record["steps"] if refund_step and s["step"] == refund_step.code
                   and s["status"] != "na"), None)
    if as_json:  # 学生退费查询: the refund step's state on its own, where the flow has one in use
        print_json({**record, "refund": None if refund is None else {
            "status": refund["status"], "refund": REFUND_WORDS.get(Status(refund["status"]), ""),
            "remark": refund["remark"]}})
        return
    console.print(f"[bold]{record['name']}[/]  学号 {record['student_no']}  {record['gender']}  "
                  f"身份证号 {record['id_card']}")
    withheld = f"  暂缓发证：{record['withheld']}" if record["withheld"] != "否" else ""
    console.print(f"{record['college']}  {record['major']}  {record['level']}  {record['class']}  "
                  f"住宿 {record['dorm'] or '无住宿信息'}{'  往届' if record['previous'] else ''}{withheld}")
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
    console.print(f"全部完成：{'是' if record['complete'] else '否'}（离校进度 {record['progress']}）")
    for r in record["restrictions"]:  # the special desk's screen (§3.9): 具有的前置条件的离校点
        console.print(f"前置条件的离校点：{r['checkpoint_name']}  离校点当前状态 {r['checkpoint_status']}  "
                      f"{r['step_name']}  步骤当前状态(初始) {r['status']}({r['initial']})  {r['restriction']}")
    if refund is not None:
        console.print(f"退费查询：{REFUND_WORDS.get(Status(refund['status']), '')}"
                      + (f"（{refund['remark']}）" if refund["remark"] else ""))
    grouped: dict[str, list[str]] = {}
    for item in record["blocked"]:
        grouped.setdefault(item["message"], []).append(item["step_name"])
    for message, names in grouped.items():
        console.print(f"[red]无法办理 {'、'.join(names)}：{message}[/]")


def _masked_record(record: StudentRecord) -> StudentRecord:
    """A student's record with every 身份证号 typed into a 备注 masked (the record's own is already)."""
    for step in record["steps"]:
        step["remark"] = mask_ids_in_text(step["remark"])
    return record


def _masked_event(event: AuditEvent) -> AuditEvent:
    """An audit event as history shows it: 身份证号 in its free text masked; a student event's whole number (kept
    in the chain so that verify --repair can restore the student) masked too."""
    detail = event.detail
    if event.kind == "student" and detail.startswith("{"):
        try:
            whole = str(json.loads(detail).get("id_card", ""))
        except (ValueError, AttributeError):
            whole = ""
        detail = json.dumps({"id_card": mask_id_card(whole)}, ensure_ascii=False)
    return replace(event, old=mask_ids_in_text(event.old), new=mask_ids_in_text(event.new),
                   detail=mask_ids_in_text(detail))


@click.command(epilog=examples(
    "  lixiao waive 0801020227 pay_arrears --reason 欠费缓交 --evidence 缓交证明2026-031"))
@click.argument("student")
@click.argument("step")
@click.option("--reason", required=True, help="理由，如：欠费缓交")
@click.option("--evidence", default="", help="证明材料，如：缓交证明编号")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def waive(ctx: click.Context, student: str, step: str, reason: str, evidence: str, operator: str | None) -> None:
    """解除某学生某步骤的前置限制（缓交）。"""
    with open_data(ctx, write=True) as folder:
        clearance = folder.clearance
        who, target = clearance.student(student), clearance.step(step)
        clearance.waive(who, target, reason, operator_name(operator), evidence)
    console.print(f"已解除 {who.name}（{who.student_no}）“{target.name}”的限制（限制已关闭）")


@click.command(epilog=examples("  lixiao unwaive 0801020227 pay_arrears"))
@click.argument("student")
@click.argument("step")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def unwaive(ctx: click.Context, student: str, step: str, operator: str | None) -> None:
    """恢复已解除的限制。"""
    with open_data(ctx, write=True) as folder:
        clearance = folder.clearance
        who, target = clearance.student(student), clearance.step(step)
        clearance.unwaive(who, target, operator_name(operator))
    console.print(f"已恢复 {who.name}（{who.student_no}）“{target.name}”的限制（限制已开启）")


@click.command(epilog=examples("  lixiao waivers"))
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def waivers(ctx: click.Context, as_json: bool) -> None:
    """已解除限制名单。"""
    with open_data(ctx, write=False) as folder:
        listed = folder.clearance.waiver_list()
    if as_json:
        print_json(listed)
        return
    table = RichTable(title=f"已解除限制名单（{len(listed)} 人次）")
    for column in ("学号", "姓名", "院系", "班级", "离校点", "离校点当前状态", "离校步骤", "步骤当前状态(初始)", "理由",
                   "凭证", "操作人", "时间"):
        table.add_column(column)
    for w in listed:
        table.add_row(w["student_no"], w["name"], w["college"], w["class"], w["checkpoint_name"],
                      w["checkpoint_status"], w["step_name"], f"{w['status']}({w['initial']})", w["reason"],
                      w["evidence"], w["operator"], w["created_at"])
    console.print(table)


# The audit chain's words (kind, decision, source, student fields) as the history table shows them.
KINDS = {"student": "学生名单", "status": "状态", "waiver": "解除限制", "session": "会话", "loan": "贷款确认",
         "remark": "备注", "review": "待核对", "repair": "修复", "query_code": "查询码", "workbook": "工作簿",
         "return": "交回文件", "ledger": "台账", "office": "通讯录"}
DECISIONS = {"added": "新增", "updated": "修改", "changed": "修改", "applied": "已记录", "reverted": "撤回已通过",
             "revoked": "取消勾选", "batch": "批量办理", "reason": "补写原因", "confirmed": "已确认",
             "lifted": "已解除",
             "restored": "已恢复", "resolved": "已处理", "noted": "已记录", "issued": "已签发", "rotated": "已更换",
             "tail_accepted": "接受丢失的尾部", "merged": "已合并", "duplicate": "重复文件", "rejected": "已拒绝",
             "quarantined": "已隔离", "held": "待确认", "keep": "保留数据库的值", "take": "采用交回的值",
             "dismiss": "已核对，不处理"}
SOURCES = {"cli": "手工（命令行）", "issue": "签发", "review": "待核对",
           "verify --repair": "修复（lixiao verify --repair）",
           "feed": "数据源", "roster": "学生名单", "file": "交回文件", "workbook": "交回的工作簿", "demo": "演示"}
FIELDS = {"student_no": "学号", "name": "姓名", "gender": "性别", "id_card": "身份证号", "college": "院系",
          "major": "专业", "class_name": "班级", "dorm": "宿舍", "level": "培养层次", "lenders": "经办单位",
          **{attr: column for column, attr in FLAG_COLUMNS.items()}, "withheld": "暂缓发证",
          "withheld_degree": "暂缓发学位证", "withheld_diploma": "暂缓发毕业证"}


def source_label(source: str, workbook_name: Callable[[str], str]) -> str:
    """Where an audit event came from, in Chinese: feed:library:x.csv → 数据源 图书馆：x.csv."""
    head, _, rest = source.partition(":")
    if head == "feed":
        feed, _, name = rest.partition(":")
        for prefix in ("loans:national", "loans:local"):
            if rest.startswith(prefix + ":"):
                feed, name = prefix, rest[len(prefix) + 1:]
        return f"数据源 {feed_label(feed)}：{name}"
    if head == "workbook" and rest:
        return f"交回的工作簿 {workbook_name(rest)}"
    if head in SOURCES and rest:
        return f"{SOURCES[head]} {rest}"
    return SOURCES.get(source, source)


def value_label(kind: str, value: str) -> str:
    """An event's old or new value in Chinese: a status's label, a student's fields by their roster column."""
    if kind in ("status", "remark") and value in {s.value for s in Status}:
        return Status(value).label
    if value.startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            return value
        if isinstance(fields, dict):
            return "，".join(f"{FIELDS.get(k, k)} {_field_text(v)}" for k, v in fields.items())
    return value


def _field_text(value: object) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list):
        return "、".join(map(str, value)) or "无"
    return str(value) if value not in (None, "") else "（空）"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.command(epilog=examples("  lixiao history 0803010103"))
@click.argument("student")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
@click.pass_context
def history(ctx: click.Context, student: str, as_json: bool) -> None:
    """某学生的全部审计记录。"""
    with open_data(ctx, write=False) as folder:
        who = folder.clearance.student(student)
        events = [_masked_event(e) for e in folder.store.history(who.student_no)]
        names = {s.code: s.name for s in folder.flow.all_steps()}
        registered = {i: folder.store.workbook(i) for i in {e.source.partition(":")[2] for e in events
                                                            if e.source.startswith("workbook:")}}
    files = lambda ident: Path(row.path).stem if (row := registered.get(ident)) else ident  # noqa: E731
    if as_json:
        print_json([asdict(e) for e in events])
        return
    table = RichTable(title=f"{who.name}（{who.student_no}）的审计记录")
    for column in ("序号", "时间", "类别", "步骤", "原值", "新值", "结果", "来源", "操作人", "说明"):
        table.add_column(column)
    for e in events:
        detail = "已记录完整身份证号（用于恢复）" if e.kind == "student" and e.detail.startswith("{") else e.detail
        table.add_row(str(e.seq), e.at.replace("T", " ")[:19], KINDS.get(e.kind, e.kind), names.get(e.step, e.step),
                      _short(value_label(e.kind, e.old), 200), _short(value_label(e.kind, e.new), 200),
                      DECISIONS.get(e.decision, e.decision), source_label(e.source, files), e.operator, detail)
    console.print(table)


@click.command(epilog=examples("  lixiao export 离校状态.xlsx\n  lixiao export matrix.json"))
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def export(ctx: click.Context, file: Path) -> None:
    """导出完整状态矩阵（.xlsx、.csv 或 .json）。"""
    suffix = file.suffix.lower()
    if suffix not in (".xlsx", ".csv", ".json"):
        raise DataFolderError("导出文件名应以 .xlsx、.csv 或 .json 结尾")
    with open_data(ctx, write=False) as folder:
        if suffix == ".json":
            entries = folder.clearance.matrix()
            file.write_text(json.dumps(entries, ensure_ascii=False, indent=1), "utf-8")
            console.print(f"已导出 {len(entries)} 条到 {file}")
            return
        if suffix == ".xlsx":
            from lixiao.reports.excel import export_matrix

            board = folder.clearance.board()
            labels = [folder.flow.step_label(s.code) for s in board.steps]
            data, count = export_matrix(board, folder.session_name, labels), len(board.codes)
        else:
            steps = folder.flow.all_steps()
            headers = [*IDENTITY, *(folder.flow.step_label(s.code) for s in steps), "全部完成"]
            rows = []
            for s, statuses, _, complete in folder.clearance.student_matrix():
                row = [s.student_no, s.name, s.college, s.class_name, s.level, s.dorm, "是" if s.previous else ""]
                row += ["" if statuses[st.code] is Status.NA else statuses[st.code].label for st in steps]
                row.append("是" if complete else "否")
                rows.append(row)
            data, count = matrix_csv(headers, rows), len(rows)
    file.write_bytes(data)
    console.print(f"已导出 {count} 名学生到 {file}")


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal (a long verify streams half a million audit events)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield advance


@click.command(epilog=examples("  lixiao verify\n  lixiao verify --repair"))
@click.option("--repair", is_flag=True,
              help="修复能修复的：重新处理台账缺失的存档文件，按审计记录恢复被改动或删除的状态、解除限制和台账，"
                   "接受丢失的审计链尾部")
@click.pass_context
def verify(ctx: click.Context, repair: bool) -> None:
    """校验数据库、审计链（重放并与状态表核对）、存档文件、回执和收件箱。

    发现损坏时数据库拒绝写入，直到 lixiao verify 再次通过。
    """
    from lixiao.sync.takeback.integrity import BackupOnlyError, check_folder, record_findings, repair_folder

    with open_data(ctx, write=False) as folder:
        if repair:
            with writer_lock(folder.root, on_wait=say_waiting):
                try:
                    with _progress("修复前校验") as advance:
                        done = repair_folder(folder, operator_name(None), advance)
                except BackupOnlyError as exc:
                    raise Refused(str(exc)) from None
            for line in done or ["没有需要修复的内容"]:
                console.print(f"修复：{line}")
        with _progress("校验审计链") as advance:
            found = check_folder(folder, advance)
        record_findings(folder, found)
        events = folder.store.audit_count()
        from lixiao.core.storage.ledger import LedgerState

        archived = sum(1 for r in folder.store.ledger_rows() if r.outcome is LedgerState.MERGED)
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


@click.command(epilog=examples("  lixiao backup /mnt/u盘/离校备份-0630.db"))
@click.argument("dest", type=click.Path(path_type=Path))
@click.pass_context
def backup(ctx: click.Context, dest: Path) -> None:
    """校验后在线备份数据库，并校验备份。

    数据库未通过 lixiao verify 的校验时不备份（损坏的备份无法用来恢复）。
    """
    from lixiao.sync.takeback.integrity import check_folder, record_findings

    with open_data(ctx, write=False) as folder:
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


@click.command(epilog=examples("  lixiao demo\n  lixiao demo /tmp/离校演示 --students 8500"))
@click.argument("directory", required=False, type=click.Path(path_type=Path), default=Path("lixiao-demo"))
@click.option("--students", "count", default=3000, show_default=True, type=click.IntRange(10, 100_000),
              help="合成学生人数")
@click.option("--seed", default=2026, show_default=True, help="随机种子")
def demo(directory: Path, count: int, seed: int) -> None:
    """用合成的学生演示完整流程。"""
    from lixiao.sync.demo.tour import run_demo

    run_demo(directory, count, seed, console)


COMMANDS = [status, waive, unwaive, waivers, history, export, verify, backup, demo]
