"""The sync pipeline: one returned file → ledger, checks, sandboxed parse, three-way merge, archive, receipt."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from lixiao.core.faults import fault_point
from lixiao.core.files import write_atomically
from lixiao.core.identity import mask_ids_in_text
from lixiao.core.merge import MAIN, WAIVERS, MergeInput, MergePlan, Refusal, apply_plan, plan_merge
from lixiao.core.signing import digest, row_secret
from lixiao.core.signing import row_key as signing_row_key
from lixiao.workbooks.returned import Returned, returned_from_dict
from lixiao.workbooks.sandbox import parse_untrusted
from lixiao.workbooks.sniff import sniff

from .datafolder import DataFolder, DataFolderError, secret_key
from .inbox import (
    SyncSettings,
    hash_regular,
    in_inbox,
    inbox_files,
    read_regular,
    safe_name,
    sync_settings,
    unique_path,
    wait_until_settled,
)
from .messages import os_error_text
from .outcomes import (
    HELD,
    MAX_REASONS,
    OUTCOMES,
    FileOutcome,
    explain,
    ledger_detail,
    refuse,
    refuse_entry,
    refuse_large,
    seen_before,
)
from .receipts import pending_lines, write_receipt

NO_OPERATOR = "（未填写经办人）"


def sync(folder: DataFolder, files: list[Path] | None = None, dry_run: bool = False,
         min_age: float = 1.0, confirm: bool = False) -> list[FileOutcome]:
    """Process the given files, or the whole inbox, once (the caller refreshes the reports afterwards).

    Inbox files copied a moment ago are waited for (up to [sync] settle_wait seconds) rather than deferred,
    so that `cp f inbox/ && lixiao sync` processes f.
    """
    recover_staging(folder)
    recover_receipts(folder)
    key = secret_key(folder.root)
    settings = sync_settings(folder.root)
    if confirm:
        for path in files or []:
            _must_be_held(folder, path)
    if files is None:
        targets = inbox_files(folder)
        wait_until_settled(targets, min_age, settings.settle_wait)
    else:
        targets = files
    return [process_file(folder, path, key, dry_run, min_age, confirm=confirm, settings=settings)
            for path in targets]


def _must_be_held(folder: DataFolder, path: Path) -> None:
    """--confirm applies only to a return the pipeline held: anything else would skip the revocation check."""
    try:
        digest_hex = hash_regular(path)
    except OSError as exc:
        raise DataFolderError(f"无法读取 {safe_name(path.name)}：{os_error_text(exc)}") from None
    row = folder.store.ledger(digest_hex)
    if row is None or row["outcome"] != HELD:
        raise DataFolderError(f"{safe_name(path.name)} 不是待确认（held/）的文件，--confirm 不适用；"
                              "新交回的文件请直接 lixiao sync 处理")


def refresh_reports(folder: DataFolder) -> Path:
    """Regenerate reports/ (called once after a batch of returns, never per file)."""
    from lixiao.reports.build import render_report

    return render_report(folder.store, folder.flow, folder.root / "reports", folder.root / "templates").index


def recover_staging(folder: DataFolder) -> None:
    """After a crash: staged copies of merged files go to the archive, others are dropped (inbox still has
    them). Cheap when nothing is staged: the daemon calls it before each batch."""
    staging = folder.root / "archive" / ".staging"
    if staging.is_dir():
        for staged in staging.iterdir():
            row = folder.store.ledger(staged.stem)
            if row and row["outcome"] == "merged":
                target = folder.root / "archive" / staged.name
                if target.exists():
                    staged.unlink()
                else:
                    staged.replace(target)
            elif not row or row["outcome"] is None:
                staged.unlink()


def recover_receipts(folder: DataFolder) -> None:
    """After a crash between a commit and its receipt: every merged or held return whose receipt is missing
    gets it, built from the ledger (once per sync, and when the daemon starts — it reads the whole ledger)."""
    for row in folder.store.ledger_rows():
        if row["outcome"] in ("merged", HELD):
            detail = ledger_detail(row)
            if detail.get("receipt") and not (folder.root / detail["receipt"]).exists():
                write_receipt(folder, row)


def process_file(folder: DataFolder, path: Path, key: bytes, dry_run: bool = False,
                 min_age: float = 1.0, *, confirm: bool = False, settings: SyncSettings | None = None) -> FileOutcome:
    """Take one returned file exactly once: the store and the ledger change in one transaction.

    ``confirm``: the coordinator confirms a return held for review (too many revocations); it is merged.
    """
    name = safe_name(path.name)
    settings = settings or sync_settings(folder.root)
    with contextlib.suppress(OSError):
        path = path.parent.resolve() / path.name  # held/x.xlsx given relative to the data folder is held/ too
    taken = _take_bytes(folder, path, name, min_age, settings, dry_run)
    if isinstance(taken, FileOutcome):
        return taken
    data, info = taken
    digest_hex = hashlib.sha256(data).hexdigest()
    store = folder.store
    previous = store.ledger(digest_hex)
    if previous and previous["outcome"] in OUTCOMES and not (confirm and previous["outcome"] == HELD):
        return seen_before(folder, path, name, digest_hex, previous, dry_run)
    verdict = sniff(data)
    if not verdict.ok and verdict.retry and time.time() - info.st_mtime < 120:
        return FileOutcome(name, "deferred", reasons=[verdict.message], hash=digest_hex)
    if not dry_run and not previous:
        with store.transaction():
            store.set_ledger(digest_hex, name, "received")
        write_atomically(folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx", data)
        with store.transaction():
            store.set_ledger(digest_hex, name, "staged")
    if not verdict.ok:
        return refuse(folder, path, name, digest_hex, "rejected", verdict.code, verdict.message, dry_run)
    parsed = parse_untrusted(data, key)
    if not parsed.ok or parsed.returned is None:
        outcome = "quarantined" if parsed.code in ("timeout", "parser_crashed") else "rejected"
        return refuse(folder, path, name, digest_hex, outcome, parsed.code, parsed.message, dry_run)
    returned = returned_from_dict(parsed.returned)
    problem = _token_problem(folder, returned) or _structure_problem(returned)
    if problem:
        return refuse(folder, path, name, digest_hex, "rejected", problem[0], problem[1], dry_run)
    payload = returned.token.payload or {}
    workbook = store.workbook(payload["workbook_id"]) or {}
    baseline = json.loads(workbook["baseline"])
    if digest(baseline) != payload.get("baseline_hash"):
        return refuse(folder, path, name, digest_hex, "rejected", "baseline_mismatch",
                       "工作簿的签发记录与数据库不一致（数据库可能从旧备份恢复）；请重新签发", dry_run)
    return _merge(folder, _Return(path, name, data, digest_hex, returned, workbook, baseline), key, settings,
                  dry_run, confirm)


def _take_bytes(folder: DataFolder, path: Path, name: str, min_age: float, settings: SyncSettings,
                dry_run: bool) -> tuple[bytes, os.stat_result] | FileOutcome:
    """The bytes of a settled regular file, or what happened instead: gone or unreadable (deferred), still being
    written (deferred), not a regular file or over the size cap (refused)."""
    gone = FileOutcome(name, "deferred", reasons=["文件已不存在（可能被移走）"])
    writing = FileOutcome(name, "deferred", reasons=["文件还在写入（大小或时间未稳定），稍后再处理"])
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return gone
    except OSError as exc:
        return FileOutcome(name, "deferred", reasons=[f"暂时无法读取：{os_error_text(exc)}"])
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
        return FileOutcome(name, "deferred", reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    return writing if len(data) != info.st_size else (data, info)


def _token_problem(folder: DataFolder, returned: Returned) -> tuple[str, str] | None:
    token = returned.token
    if token.status in ("missing", "malformed"):
        return ("no_token", "不是本系统签发的工作簿，或隐藏的“_lixiao”标识表被删除；请交回系统发给您的原文件")
    if token.status != "valid":
        return ("bad_signature",
                "工作簿标识的签名无效：标识被修改，或文件来自另一个数据文件夹；请交回系统发给您的原文件")
    payload = token.payload or {}
    if payload.get("session") != folder.session_name:
        return ("other_session", f"工作簿属于离校会话“{payload.get('session')}”，不是当前的“{folder.session_name}”")
    if not folder.store.workbook(str(payload.get("workbook_id", ""))):
        return ("unknown_workbook", "签名有效，但数据库中没有这个工作簿的签发记录（数据库可能从旧备份恢复）")
    if payload.get("checkpoint") not in {cp.code for cp in folder.flow.checkpoints}:
        return ("unknown_checkpoint", f"当前流程中没有离校点 {payload.get('checkpoint')}")
    return None


def _structure_problem(returned: Returned) -> tuple[str, str] | None:
    """A valid token on content that is not that workbook (its sheet, every step column, or the 行校验 column
    missing)."""
    payload = returned.token.payload or {}
    missing_columns = {a.step for a in returned.anomalies if a.code == "column_missing"}
    if any(a.code in ("sheet_missing", "header_missing") and a.sheet in ("办理", "解除限制")
           for a in returned.anomalies):
        return ("structure_mismatch", "工作簿的“办理”表或表头被删除或改名；请交回系统发给您的原文件")
    steps = payload.get("steps", {})
    if payload.get("kind") == "office" and steps and missing_columns >= set(steps.values()):
        return ("token_mismatch", "工作簿标识与内容不符（标识可能是从另一份工作簿复制来的）；请交回系统发给您的原文件")
    if any(a.code == "row_key_missing" for a in returned.anomalies):
        return ("row_key_missing", "工作簿的“行校验”列被删除或改名，无法确认每一行的勾选属于哪名学生；"
                "请交回系统发给您的原文件（可以排序、筛选，但不要删除列）")
    return None


@dataclass(frozen=True, slots=True)
class _Return:
    """A returned file that passed every file-level check, ready to merge."""

    path: Path
    name: str
    data: bytes
    hash: str
    returned: Returned
    workbook: dict[str, Any]
    baseline: dict[str, Any]


class _Refused(Exception):  # noqa: N818 - a control-flow signal inside the merge transaction, not an error
    """The whole file is refused after its rows were looked at (too many misaligned rows)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _plan(folder: DataFolder, item: _Return, key: bytes, settings: SyncSettings) -> MergePlan:
    """The merge plan of one return, decided on what the store holds now (call inside the write transaction)."""
    store = folder.store
    payload = item.returned.token.payload or {}
    row_key: Callable[[str], str] | None = None
    if payload.get("row_keys"):
        secret = row_secret(key, item.workbook["id"])
        row_key = partial(signing_row_key, secret)
    students = {s.student_no: s for s in store.students()}
    waived: dict[str, set[str]] = {}
    for w in store.active_waivers():
        waived.setdefault(w["student_no"], set()).add(w["step"])
    returned = item.returned
    modes: dict[str, str] = payload.get("batch_sheets", {})
    shifted = {(MAIN, a.step) for a in returned.anomalies if a.code == "tick_outside_rows"}
    shifted |= {(modes.get(a.sheet, WAIVERS), a.step) for a in returned.anomalies if a.code == "column_shifted"}
    plan = plan_merge(folder.flow, folder.year, item.workbook["checkpoint"], item.baseline,
                      MergeInput(returned.rows, returned.batch, returned.duplicates, returned.waivers,
                                 returned.batch_rows, shifted),
                      students, store.all_status_rows(), waived, row_key)
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
    return plan


def _merge(folder: DataFolder, item: _Return, key: bytes, settings: SyncSettings, dry_run: bool,
           confirm: bool) -> FileOutcome:
    store = folder.store
    payload = item.returned.token.payload or {}
    operator = item.returned.operator or NO_OPERATOR
    try:
        if dry_run:
            plan = _plan(folder, item, key, settings)
            return _result(item, plan, _hold_reason(plan, settings, confirm))
        with store.transaction():
            plan = _plan(folder, item, key, settings)
            held = _hold_reason(plan, settings, confirm)
            result = _result(item, plan, held)
            stamp = datetime.now()
            tag = f"-待确认-{item.hash[:12]}" if held else f"-{item.hash[:12]}"
            receipt = f"receipts/{stamp:%Y%m%d-%H%M%S}-{safe_name(Path(item.name).stem, 40)}{tag}-回执.xlsx"
            detail = {"applied": result.applied, "refused": result.refused, "conflicts": result.conflicts,
                      "operator": operator, "title": str(payload.get("title", "")),
                      "scope": str(payload.get("scope", "")), "generation": payload.get("generation"),
                      "warnings": [mask_ids_in_text(w) for w in plan.warnings[:MAX_REASONS * 4]],
                      "receipt": receipt, "at": stamp.isoformat(timespec="seconds")}
            if held:
                detail.update(code=HELD, message=held, pending=pending_lines(folder, plan))
                store.append_audit([{"kind": "return", "decision": HELD, "source": f"file:{item.name}",
                                     "source_hash": item.hash, "operator": operator, "detail": held}])
                store.set_ledger(item.hash, item.name, HELD, HELD, item.workbook["id"],
                                 json.dumps(detail, ensure_ascii=False))
            else:
                apply_plan(store, plan, source=f"workbook:{item.workbook['id']}", operator=operator,
                           source_hash=item.hash)
                fault_point("merge")
                store.append_audit([{
                    "kind": "return", "decision": "merged", "source": f"file:{item.name}", "source_hash": item.hash,
                    "operator": operator, "detail": f"{item.workbook['id']} 记录 {result.applied} 拒绝 "
                                                    f"{result.refused} 冲突 {result.conflicts}"}])
                store.set_ledger(item.hash, item.name, "merged", "merged", item.workbook["id"],
                                 json.dumps(detail, ensure_ascii=False))
    except _Refused as refused:
        return refuse(folder, item.path, item.name, item.hash, "rejected", refused.code, refused.message, dry_run)
    fault_point("receipt")
    # Only after the commit: keep the exact bytes, let go of the returned copy, write the receipt.
    staged = folder.root / "archive" / ".staging" / f"{item.hash}.xlsx"
    if held:
        target = unique_path(folder.root / HELD / item.name)
        target.parent.mkdir(exist_ok=True)
        if in_inbox(folder, item.path):
            item.path.replace(target)
        else:
            write_atomically(target, item.data)
        staged.unlink(missing_ok=True)
        explain(target, item.name, HELD, HELD, held, item.hash)
    else:
        archived = folder.root / "archive" / f"{item.hash}.xlsx"
        if staged.exists():
            staged.replace(archived)
        elif not archived.exists():
            write_atomically(archived, item.data)
        if in_inbox(folder, item.path) or item.path.parent == folder.root / HELD:
            try:
                if hashlib.sha256(read_regular(item.path)).hexdigest() == item.hash:
                    item.path.unlink()
                    item.path.with_name(item.path.name + ".说明.txt").unlink(missing_ok=True)
            except OSError:
                pass
    row = store.ledger(item.hash)
    if row is not None:
        result.receipt = write_receipt(folder, row)
    return result


def _hold_reason(plan: MergePlan, settings: SyncSettings, confirm: bool) -> str:
    """Why a return waits for the coordinator, or "": it would revoke many passed cells (or lifted restrictions),
    or one column both revokes and newly ticks cells — what a tick column sorted or shifted on its own does
    (the passed ticks move to other students); a clerk correcting one slip is held too, and confirmed."""
    if confirm:
        return ""
    revoked = plan.revocations + sum(not w.lift for w in plan.waiver_changes)
    if revoked > settings.max_revocations:
        return (f"本文件会撤销 {revoked} 个已通过的格子或已解除的限制，超过 {settings.max_revocations} 个（lixiao.toml "
                "[sync] max_revocations）。撤销很少见，常见原因是只对勾选列排序或粘贴，使勾选错位到别的学生。"
                "整个文件尚未生效，等待协调人确认")
    moved: dict[str, list[int]] = {}  # per column: [new ticks (applied or refused), revocations]
    for change in plan.changes:
        if change.kind in ("applied", "revoked"):
            moved.setdefault(change.step, [0, 0])[change.kind == "revoked"] += 1
    for refusal in plan.refusals:
        if refusal.value == "已勾选" and refusal.step:
            moved.setdefault(refusal.step, [0, 0])[0] += 1
        elif refusal.value == "解除限制":
            moved.setdefault(f"waiver:{refusal.step}", [0, 0])[0] += 1
    for w in plan.waiver_changes:
        moved.setdefault(f"waiver:{w.step}", [0, 0])[not w.lift] += 1
    for added, taken in moved.values():
        if added and taken:
            return (f"本文件在同一列中撤销了 {taken} 个已通过的格子（或已解除的限制），又新勾选了 {added} 个："
                    "这正是只对勾选列排序、或在勾选列中插入/删除单元格时勾选整体错位的样子。整个文件尚未生效，"
                    "等待协调人核对后确认（若确是改正笔误，确认即可）")
    return ""


def _result(item: _Return, plan: MergePlan, held: str) -> FileOutcome:
    if held:
        return FileOutcome(item.name, HELD, 0, len(plan.refusals), len(plan.conflicts), [f"held：{held}"],
                           hash=item.hash)
    return FileOutcome(item.name, "merged", len(plan.changes) + len(plan.waiver_changes), len(plan.refusals),
                       len(plan.conflicts), [mask_ids_in_text(w) for w in plan.warnings[:MAX_REASONS]],
                       hash=item.hash)
