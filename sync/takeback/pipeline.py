"""The sync pipeline: one returned file → ledger, checks, sandboxed parse, three-way merge, archive, receipt.

The steps of one return, in order (each a function below; the ledger's transitions are core/ledger.TRANSITIONS):

1. ``process_file`` / ``process_bytes``: the bytes of a settled regular file (or a mail attachment) — an
   ``Incoming`` that knows where it came from (``Origin``) and whether lixiao may move it.
2. ``take``: the content hash keys the ledger; a decided hash is ``seen_before`` (duplicate); otherwise the file
   is sniffed, recorded ``received``, copied to archive/.staging and recorded ``staged``.
3. ``checks.checked``: sandboxed parse, token, structure and baseline — any failure refuses the whole file.
4. ``_merge``: inside one write transaction the plan is decided on what the store holds now, and either held
   or applied, with its audit events and the ledger's outcome.
5. ``_dispose``: only after the commit the exact bytes go to archive/ (or held/), the inbox copy goes, and the
   receipt is written from the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from lixiao.core.clearance.holds import hold_reason
from lixiao.core.clearance.merge import (
    MAIN,
    WAIVERS,
    MergeInput,
    MergePlan,
    Refusal,
    apply_plan,
    plan_merge,
)
from lixiao.core.manual.identity import mask_ids_in_text
from lixiao.core.manual.model import Student
from lixiao.core.storage.chain import Event
from lixiao.core.storage.faults import fault_point
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.ledger import Channel, LedgerRow, LedgerState, Origin, ReturnDetail
from lixiao.core.storage.memory import no_cycle_collection
from lixiao.core.storage.signing import row_key as signing_row_key
from lixiao.core.storage.signing import row_secret
from lixiao.sync.datafolder import DataFolder
from lixiao.sync.messages import os_error_text
from lixiao.workbooks.sniff import sniff

from .arrival import arrival
from .checks import CheckedReturn, Incoming, checked
from .inbox import (
    SyncSettings,
    in_inbox,
    read_regular,
    safe_name,
    sync_settings,
    unique_path,
)
from .outcomes import (
    HELD_FOLDER,
    MAX_REASONS,
    FileOutcome,
    Outcome,
    explain,
    refuse,
    refuse_entry,
    refuse_large,
    seen_before,
)
from .receipts import Taken, pending_lines, write_receipt
from .senders import UNKNOWN_SENDER_FLAG, misdirected, sender_doubt

NO_OPERATOR = "（未填写经办人）"


def process_file(folder: DataFolder, path: Path, key: bytes, dry_run: bool = False, min_age: float = 1.0, *,
                 confirm: bool = False, settings: SyncSettings | None = None,
                 origin: Origin | None = None) -> FileOutcome:
    """Take one returned file exactly once: the store and the ledger change in one transaction.

    ``confirm``: the coordinator confirms a return held for review (too many revocations); it is merged.
    ``origin``: where the file came from (default: inbox/ for an inbox file, the command line otherwise).
    """
    name = safe_name(path.name)
    settings = settings or sync_settings(folder.root)
    with contextlib.suppress(OSError):
        path = path.parent.resolve() / path.name  # held/x.xlsx given relative to the data folder is held/ too
    movable = in_inbox(folder, path) or path.parent == folder.root / HELD_FOLDER
    origin = origin or Origin(Channel.INBOX if in_inbox(folder, path) else Channel.FILE)
    taken = _take_bytes(folder, path, name, min_age, settings, dry_run)
    if isinstance(taken, FileOutcome):
        return taken
    data = taken
    with no_cycle_collection():
        return take(folder, Incoming(name, data, path, movable, origin), key, settings, dry_run,
                    confirm)


def process_bytes(folder: DataFolder, name: str, data: bytes, origin: Origin, key: bytes, *,
                  dry_run: bool = False, settings: SyncSettings | None = None) -> FileOutcome:
    """Take one return that is not a file of ours (a mail attachment) exactly once; copies of its bytes go to
    archive/, rejected/ or held/ as for any other return."""
    settings = settings or sync_settings(folder.root)
    if len(data) > settings.max_bytes:
        message = (f"附件大小 {len(data) / 1024 / 1024:.0f} MB 超过上限 {settings.max_file_mb:g} MB（lixiao.toml "
                   "[sync] max_file_mb），不是正常的离校工作簿；请交回系统发给您的原文件")
        digest_hex = hashlib.sha256(data).hexdigest()
        previous = folder.store.ledger(digest_hex)
        if previous and previous.outcome is not None:
            return seen_before(folder, None, safe_name(name), digest_hex, previous, dry_run)
        return refuse(folder, None, safe_name(name), digest_hex, Outcome.REJECTED, "too_large", message, dry_run,
                      staged=False, origin=origin)
    incoming = Incoming(safe_name(name), data, None, False, origin)
    with no_cycle_collection():
        return take(folder, incoming, key, settings, dry_run, False)


def take(folder: DataFolder, item: Incoming, key: bytes, settings: SyncSettings, dry_run: bool,
         confirm: bool) -> FileOutcome:
    """Steps 2–5 for bytes already read: ledger, sniff, staging, checks, merge, disposal. What the take appends to
    the audit chain is also kept in memory, for its receipt."""
    folder.store.recording = []
    try:
        return _take(folder, item, key, settings, dry_run, confirm)
    finally:
        folder.store.recording = None


def _take(folder: DataFolder, item: Incoming, key: bytes, settings: SyncSettings, dry_run: bool,
          confirm: bool) -> FileOutcome:
    digest_hex = item.hash
    store = folder.store
    arriving = arrival(folder, item, settings, dry_run)  # judged by its bytes, never by its (copied) mtime
    if isinstance(arriving, FileOutcome):
        return arriving  # still being copied: left where it is, no ledger decision
    previous = store.ledger(digest_hex)
    if previous and _decided_for(folder, previous, item.origin) and not (confirm and previous.outcome is
                                                                         LedgerState.HELD):
        return seen_before(folder, item.path if item.movable else None, item.name, digest_hex, previous, dry_run)
    verdict = arriving or sniff(item.data)
    again = previous is not None and previous.state is LedgerState.MISDIRECTED  # now from another place
    if not dry_run and (not previous or again):
        if not again:
            with store.transaction():
                store.set_ledger(digest_hex, item.name, LedgerState.RECEIVED, origin=item.origin)
        write_atomically(folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx", item.data)
        with store.transaction():
            store.set_ledger(digest_hex, item.name, LedgerState.STAGED, origin=item.origin)
    if not verdict.ok:
        return _refuse(folder, item, Outcome.REJECTED, verdict.code, verdict.message, dry_run)
    ready = checked(folder, item, key)
    if isinstance(ready, tuple):
        outcome, code, message = ready
        return _refuse(folder, item, outcome, code, message, dry_run)
    misplaced = misdirected(folder, item.origin, ready.workbook)
    if misplaced:
        return _refuse(folder, item, Outcome.REJECTED, *misplaced, dry_run)
    return _merge(folder, ready, key, settings, dry_run, confirm)


def _decided_for(folder: DataFolder, previous: LedgerRow, origin: Origin) -> bool:
    """True when the ledger already decided this content for this origin: a decision about the content (merged,
    held, refused for what it holds) is final whoever brings it; a refusal for where it came from is final for
    that place only."""
    if previous.outcome is None:
        return False
    return previous.outcome is not LedgerState.MISDIRECTED or origin.place in folder.store.misdirected_at(
        previous.hash)


def _refuse(folder: DataFolder, item: Incoming, outcome: Outcome, code: str, message: str,
            dry_run: bool) -> FileOutcome:
    return refuse(folder, item.path if item.movable else None, item.name, item.hash, outcome, code, message,
                  dry_run, origin=item.origin)


def _take_bytes(folder: DataFolder, path: Path, name: str, min_age: float, settings: SyncSettings,
                dry_run: bool) -> bytes | FileOutcome:
    """The bytes of a settled regular file, or what happened instead: gone or unreadable (deferred), still being
    written (deferred), not a regular file or over the size cap (refused)."""
    gone = FileOutcome(name, Outcome.DEFERRED, reasons=["文件已不存在（可能被移走）"])
    writing = FileOutcome(name, Outcome.DEFERRED, reasons=["文件还在写入（大小或时间未稳定），稍后再处理"])
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return gone
    except OSError as exc:
        return FileOutcome(name, Outcome.DEFERRED, reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    if not stat.S_ISREG(info.st_mode):
        return refuse_entry(folder, path, name, info, dry_run)
    if min_age > 0 and time.time() - info.st_mtime < min_age:
        return writing
    if info.st_size > settings.max_bytes:
        return refuse_large(folder, path, name, info.st_size, settings, dry_run)
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return gone
    except OSError as exc:
        return FileOutcome(name, Outcome.DEFERRED, reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    return writing if len(data) != info.st_size else data


class _Refused(Exception):  # noqa: N818 - a control-flow signal inside the merge transaction, not an error
    """The whole file is refused after its rows were looked at (too many misaligned rows)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _students(folder: DataFolder, ret: CheckedReturn) -> dict[str, Student]:
    """The students this workbook was issued for or returned (a late-season store holds 500,000 statuses)."""
    baseline = ret.baseline
    among = {*baseline.cells, *(pair.partition("|")[0] for pair in baseline.waivers), *ret.returned.rows}
    return {s.student_no: s for s in folder.store.students(among)}


def _plan(folder: DataFolder, ret: CheckedReturn, key: bytes, settings: SyncSettings,
          students: dict[str, Student]) -> MergePlan:
    """The merge plan of one return, decided on what the store holds now (call inside the write transaction)."""
    store = folder.store
    payload = ret.returned.token.payload or {}
    row_key: Callable[[str], str] | None = None
    if payload.get("row_keys"):
        row_key = partial(signing_row_key, row_secret(key, ret.workbook.id))
    returned = ret.returned
    among = students.keys()
    waived: dict[str, set[str]] = {}
    for w in store.active_waivers():
        waived.setdefault(w.student_no, set()).add(w.step)
    modes = payload.get("batch_sheets", {})
    modes = modes if isinstance(modes, dict) else {}
    shifted = {(MAIN, a.step) for a in returned.anomalies if a.code == "tick_outside_rows"}
    shifted |= {(str(modes.get(a.sheet, WAIVERS)), a.step) for a in returned.anomalies if a.code == "column_shifted"}
    plan = plan_merge(folder.flow, folder.year, ret.workbook.checkpoint, ret.baseline,
                      MergeInput(returned.rows, returned.batch, returned.duplicates, returned.waivers,
                                 returned.batch_rows, shifted),
                      students, store.all_status_rows(among), waived, row_key, store.confirmed_lenders(among))
    if row_key is None:
        plan.warnings.append("此工作簿由旧版本签发，没有“行校验”列：无法发现只对部分列排序造成的错行；请改用新签发的工作簿")
    duplicated = sorted({d.student_no for d in returned.duplicates})
    out_of_line = len(plan.misaligned) + len(duplicated)
    if out_of_line > settings.max_misaligned_rows:
        examples = "；".join([r.reason for r in plan.misaligned[:3]]
                            + [f"学号 {no} 出现多次" for no in duplicated[:max(0, 3 - len(plan.misaligned))]])
        raise _Refused("misaligned", f"有 {out_of_line} 行的学号与同一行的其他单元格已错开或重复（可能只选中了部分列"
                       "排序，或在部分列中粘贴、插入或删除了单元格）。为避免把勾选记到别的学生名下，整个文件未被处理。"
                       "请重新打开系统发给您的原文件办理；排序时请点击表头的筛选按钮，或先点击行号选中整行再排序。"
                       f"例如：{examples}")
    plan.refusals[:0] = plan.misaligned
    for anomaly in returned.anomalies:
        if anomaly.code == "bad_mark" and anomaly.student_no:
            plan.refusals.append(Refusal(anomaly.student_no, anomaly.step, anomaly.value or "（空）",
                                         f"{anomaly.cell}：{anomaly.reason}"))
        elif anomaly.code == "tick_outside_rows":
            continue  # its column is refused as shifted, with the reason, cell by cell
        elif anomaly.code not in ("duplicate_student",):
            where = " ".join(p for p in (anomaly.sheet, anomaly.cell) if p)
            plan.warnings.append(f"{where}：{anomaly.reason}" if where else anomaly.reason)
    if not returned.operator:
        plan.warnings.append("“经办人”未填写；本次记录的操作人为“（未填写经办人）”")
    origin = ret.item.origin
    if origin.channel is Channel.MAIL and not origin.sender_known:
        plan.warnings.append(f"交回人 {origin.sender} 不在离校点通讯录中，请协调人核对")
    return plan


def _hold(folder: DataFolder, plan: MergePlan, ret: CheckedReturn, settings: SyncSettings, confirm: bool) -> str:
    """Why this return waits for the coordinator ("" when it does not, or when the coordinator confirms it)."""
    if confirm:
        return ""
    return sender_doubt(folder, ret, settings) or hold_reason(plan, settings.max_revocations)


def _merge(folder: DataFolder, ret: CheckedReturn, key: bytes, settings: SyncSettings, dry_run: bool,
           confirm: bool) -> FileOutcome:
    """Step 4: decide and write one return in one transaction (held: nothing applied, the ledger says why)."""
    store = folder.store
    payload = ret.returned.token.payload or {}
    operator = ret.returned.operator or NO_OPERATOR
    try:
        if dry_run:
            plan = _plan(folder, ret, key, settings, _students(folder, ret))
            return _result(ret, plan, _hold(folder, plan, ret, settings, confirm))
        with store.transaction():
            students = _students(folder, ret)
            plan = _plan(folder, ret, key, settings, students)
            names = {no: s.name for no, s in students.items()}  # for the receipt; the Students go now
            del students
            held = _hold(folder, plan, ret, settings, confirm)
            result = _result(ret, plan, held)
            stamp = datetime.now()
            tag = f"-待确认-{ret.hash[:12]}" if held else f"-{ret.hash[:12]}"
            generation = payload.get("generation")
            detail = ReturnDetail(
                applied=result.applied, refused=result.refused, conflicts=result.conflicts, operator=operator,
                title=str(payload.get("title", "")), scope=str(payload.get("scope", "")),
                generation=generation if isinstance(generation, int) else None,
                warnings=[mask_ids_in_text(w) for w in plan.warnings[:MAX_REASONS * 4]],
                receipt=f"receipts/{stamp:%Y%m%d-%H%M%S}-{safe_name(Path(ret.name).stem, 40)}{tag}-回执.xlsx",
                at=stamp.isoformat(timespec="seconds"), origin=ret.item.origin.describe(), program=ret.returned.program)
            source = f"file:{ret.name}"
            if not held and not confirm and ret.item.origin.channel is Channel.MAIL \
                    and not ret.item.origin.sender_known:
                detail.flagged = UNKNOWN_SENDER_FLAG.format(sender=ret.item.origin.sender)
            if held:
                detail.code, detail.message, detail.pending = Outcome.HELD, held, pending_lines(folder, plan)
                store.append_audit([Event("return", decision=Outcome.HELD, source=source, source_hash=ret.hash,
                                          operator=operator, detail=held)])
                store.set_ledger(ret.hash, ret.name, LedgerState.HELD, LedgerState.HELD, ret.workbook.id, detail)
            else:
                apply_plan(store, plan, source=f"workbook:{ret.workbook.id}", operator=operator, source_hash=ret.hash)
                fault_point("merge")
                store.append_audit([Event(
                    "return", decision=Outcome.MERGED, source=source, source_hash=ret.hash, operator=operator,
                    detail=f"{ret.workbook.id} 记录 {result.applied} 拒绝 {result.refused} 冲突 {result.conflicts}"
                           f"（{ret.item.origin.describe()}）")])
                store.set_ledger(ret.hash, ret.name, LedgerState.MERGED, LedgerState.MERGED, ret.workbook.id, detail)
    except _Refused as refused:
        return _refuse(folder, ret.item, Outcome.REJECTED, refused.code, refused.message, dry_run)
    fault_point("receipt")
    _dispose(folder, ret.item, held)
    row = store.ledger(ret.hash)
    if row is not None:  # from what this take wrote, as the store would give it (rebuilt from the store after a crash)
        kept = not held
        result.receipt = write_receipt(folder, row, Taken(
            store.recording or [], [(r.student_no, r.step, r.value, r.reason) for r in plan.refusals] if kept else [],
            [(c.student_no, c.step, c.issued, c.returned, c.current) for c in plan.conflicts] if kept else [],
            names))
    return result


def _dispose(folder: DataFolder, item: Incoming, held: str) -> None:
    """Step 5, only after the commit: keep the exact bytes (archive/ or held/), let go of the returned copy."""
    staged = folder.root / "archive" / ".staging" / f"{item.hash}.xlsx"
    if held:
        target = unique_path(folder.root / HELD_FOLDER / item.name)
        target.parent.mkdir(exist_ok=True)
        if item.path is not None and item.movable and in_inbox(folder, item.path):
            item.path.replace(target)
        else:
            write_atomically(target, item.data)
        staged.unlink(missing_ok=True)
        explain(target, item.name, Outcome.HELD, Outcome.HELD, held, item.hash)
        return
    archived = folder.root / "archive" / f"{item.hash}.xlsx"
    if staged.exists():
        staged.replace(archived)
    elif not archived.exists():
        write_atomically(archived, item.data)
    if item.path is not None and item.movable:
        try:
            if hashlib.sha256(read_regular(item.path)).hexdigest() == item.hash:
                item.path.unlink()
                item.path.with_name(item.path.name + ".说明.txt").unlink(missing_ok=True)
        except OSError:
            pass


def _result(ret: CheckedReturn, plan: MergePlan, held: str) -> FileOutcome:
    if held:
        return FileOutcome(ret.name, Outcome.HELD, 0, len(plan.refusals), len(plan.conflicts), [f"held：{held}"],
                           hash=ret.hash)
    return FileOutcome(ret.name, Outcome.MERGED, len(plan.changes) + len(plan.waiver_changes), len(plan.refusals),
                       len(plan.conflicts), [mask_ids_in_text(w) for w in plan.warnings[:MAX_REASONS]],
                       hash=ret.hash)
