"""The receipt (回执) of a merged or held return, built from what the store holds about it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lixiao.core.clearance.merge import Change, ChangeKind, MergePlan
from lixiao.core.manual.identity import each_text, mask_ids_in_text
from lixiao.core.manual.model import Status
from lixiao.core.storage.chain import AuditEvent
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.ledger import LedgerRow, LedgerState
from lixiao.sync.datafolder import DataFolder
from lixiao.workbooks.receipt import build_receipt

from .outcomes import FileOutcome


def pending_lines(folder: DataFolder, plan: MergePlan) -> list[str]:
    """What a held return would do once confirmed, one line per cell (for its receipt)."""
    names = {s.code: s.name for s in folder.flow.all_steps()}
    def was(change: Change) -> str:
        return Status(change.old).marked if change.old else Status.PENDING.marked

    lines = [f"确认后：{c.student_no} {names.get(c.step, c.step)}："
             + f"{was(c)} → {'撤销（' + c.new.marked + '）' if c.kind is ChangeKind.REVOKED else c.new.marked}"
             for c in plan.changes]
    lines += [f"确认后：{w.student_no} {names.get(w.step, w.step)}：{'解除限制' if w.lift else '重新开启限制'}"
              for w in plan.waiver_changes]
    return [mask_ids_in_text(line) for line in lines[:500]]


@dataclass(frozen=True, slots=True)
class Taken:
    """What one take wrote, kept in memory: the audit rows it appended (fields, prev_hash, hash, in order), the
    refused ticks and conflicts it kept, and the 姓名 of its students. A receipt built from these is the one the
    store gives (tests/test_receipt_memory.py pins the two); after a crash the receipt is rebuilt from the store."""

    rows: list[list[str]]
    refused: list[tuple[str, str, str, str]]
    conflicts: list[tuple[str, str, str, str, str]]
    names: Mapping[str, str]


def write_receipt(folder: DataFolder, row: LedgerRow, taken: Taken | None = None) -> str:
    """Write the receipt (回执) of a merged or held return — from what this take wrote (``taken``) or from what
    the store holds about it (its ledger row, audit events, refused ticks and conflicts), so that a receipt lost in
    a crash is rebuilt the same way."""
    summary, sections = receipt_content(folder, row, taken)
    if taken is not None:
        taken.rows.clear()  # a whole class's return: 27,000 audit rows, let go before the sheets are written
    relative = row.details.receipt or f"receipts/{row.hash[:12]}-回执.xlsx"
    write_atomically(folder.root / relative, build_receipt(summary, sections))
    return relative


def _events(folder: DataFolder, digest_hex: str, taken: Taken | None) -> list[AuditEvent] | None:
    """The return's audit events from what the take appended; None when they are not all of them (an earlier take
    of the same bytes left some: a return merged again by verify --repair) or the chain's head is not the last."""
    if taken is None:
        return None
    events = [AuditEvent(0, *r) for r in taken.rows if r[8] == digest_hex]  # r[8]: source_hash (Event.fields)
    seq, head = folder.store.head()
    if not events or events[-1].hash != head or folder.store.audit_count_of(digest_hex) != len(events):
        return None
    events[-1] = replace(events[-1], seq=seq)  # the receipt names only the last event's place in the chain
    return events


def receipt_content(folder: DataFolder, row: LedgerRow,
                    taken: Taken | None = None) -> tuple[list[tuple[str, str]], dict[str, list[list[str]]]]:
    """The receipt's summary lines and listings (build_receipt's arguments)."""
    detail = row.details
    digest_hex = row.hash
    store = folder.store
    names = {s.code: s.name for s in folder.flow.all_steps()}
    events = _events(folder, digest_hex, taken)
    if events is None or taken is None:
        taken = None
        events = store.audit_events(digest_hex)
        refused, conflicts = store.refused_of(digest_hex), store.conflicts_of(digest_hex)
    else:
        refused, conflicts = taken.refused, taken.conflicts
    numbers = {e.student_no for e in events} | {r[0] for r in refused} | {c[0] for c in conflicts}
    if taken is None:
        who = store.student_names(numbers)
    else:
        who = {no: taken.names[no] for no in numbers if no in taken.names}
        who.update(store.student_names(numbers - who.keys()) if numbers - who.keys() else {})

    def label(value: str) -> str:
        return (Status(value) if value else Status.PENDING).marked

    held = row.outcome is LedgerState.HELD
    summary = [
        ("文件", row.file_name), ("离校点", detail.title), ("范围", detail.scope),
        ("版本", f"第 {detail.generation} 版"), ("经办人", detail.operator),
        ("处理时间", detail.at or row.updated_at),
        ("结果", "待协调人确认（尚未生效）" if held else "已合并"),
        ("已记录", str(detail.applied)), ("被拒绝", str(detail.refused)),
        ("冲突待核对", str(detail.conflicts)), ("内容哈希", digest_hex),
    ]
    if detail.origin:
        summary.insert(5, ("交回方式", detail.origin))
    if detail.program:
        summary.append(("保存软件", detail.program))
    if held:
        summary.insert(summary.index(("已记录", str(detail.applied))), ("原因", detail.message))
    if events:  # where this return's commit left the chain: the same however late the receipt is written
        summary.append(("审计链位置", f"第 {events[-1].seq} 条，{events[-1].hash[:16]}"))
    applied = [[e.student_no, who.get(e.student_no, ""), names.get(e.step, e.step), label(e.old),
                label(e.new), {"revoked": "撤销", "reason": f"补写原因：{e.detail}"}.get(e.decision, e.detail)]
               for e in events if e.kind == "status"]
    applied += [[e.student_no, who.get(e.student_no, ""), names.get(e.step, e.step), "",
                 e.new, e.detail] for e in events if e.kind == "waiver"]
    del events  # a whole class's return: 27,000 events, let go before the sheets are written
    sections = {
        "applied": applied,
        "refused": [[no, who.get(no, ""), names.get(step, step), value, reason]
                    for no, step, value, reason in refused],
        "conflicts": [[no, who.get(no, ""), names.get(step, step), issued, returned, current]
                      for no, step, issued, returned, current in conflicts],
        "warnings": [[w] for w in [*detail.pending, *detail.warnings]],
    }
    del applied
    for key, lines in sections.items():  # masked in place: one copy of the listings at a time
        sections[key] = _masked(lines)
    return summary, sections


def _masked(lines: list[list[str]]) -> list[list[str]]:
    """Every cell with its 身份证号-shaped runs masked, in one pass over the whole listing (``each_text``)."""
    texts = iter(each_text([str(cell) for line in lines for cell in line], mask_ids_in_text))
    return [[next(texts) for _cell in line] for line in lines]


def receipt_path(folder: DataFolder, outcome: FileOutcome) -> Path | None:
    """The receipt of a processed file, if there is one on disk: the one this run wrote, or — for a duplicate
    or a re-taken file — the first one, named in its ledger row."""
    relative = outcome.receipt
    if not relative and outcome.hash:
        row = folder.store.ledger(outcome.hash)
        relative = row.details.receipt if row is not None else ""
    path = folder.root / relative if relative else None
    return path if path is not None and path.is_file() else None
