"""The sync pipeline: one returned file → ledger, checks, sandboxed parse, three-way merge, archive, receipt."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lixiao.core.merge import MergeInput, MergePlan, Refusal, apply_plan, plan_merge
from lixiao.core.model import Status
from lixiao.core.signing import digest
from lixiao.reports.build import write_atomically
from lixiao.workbooks.reader import Returned, returned_from_dict
from lixiao.workbooks.receipt import build_receipt
from lixiao.workbooks.sandbox import parse_untrusted
from lixiao.workbooks.sniff import sniff

from .datafolder import DataFolder, secret_key

OUTCOMES = ("merged", "duplicate", "rejected", "quarantined", "deferred")
NO_OPERATOR = "（未填写经办人）"
MAX_REASONS = 50


def fault_point(name: str) -> None:
    """Fault injection for the fault tests (LIXIAO_FAULT=POINT:ACTION): sleep N seconds, or fail like a full disk."""
    spec = os.environ.get("LIXIAO_FAULT", "")
    if not spec.startswith(name + ":"):
        return
    action = spec.split(":", 1)[1]
    if action == "diskfull":
        raise sqlite3.OperationalError("database or disk is full")
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    time.sleep(float(action))


def is_debris(path: Path) -> bool:
    """Editor and copy debris that is never a returned workbook: ~$x, .~lock.x#, *.tmp, no extension, hidden."""
    name = path.name
    return (name.startswith(("~$", ".~lock.", ".")) or name.endswith(("#", ".tmp", ".partial", "~"))
            or not path.suffix or path.suffix.lower() in (".txt", ".crdownload", ".part"))


@dataclass
class FileOutcome:
    """What happened to one file (the `sync --json` element)."""

    file: str
    outcome: str
    applied: int = 0
    refused: int = 0
    conflicts: int = 0
    reasons: list[str] = field(default_factory=list)
    receipt: str = ""
    hash: str = ""

    def as_json(self) -> dict[str, Any]:
        """The contract's JSON object for this file."""
        return {"file": self.file, "outcome": self.outcome, "applied": self.applied, "refused": self.refused,
                "conflicts": self.conflicts, "reasons": self.reasons, "receipt": self.receipt}


def inbox_files(folder: DataFolder) -> list[Path]:
    """Candidate files in inbox/ (debris skipped), oldest first."""
    inbox = folder.root / "inbox"
    files = [p for p in inbox.iterdir() if p.is_file() and not is_debris(p)]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def sync(folder: DataFolder, files: list[Path] | None = None, dry_run: bool = False,
         min_age: float = 1.0) -> list[FileOutcome]:
    """Process the given files, or the whole inbox, once (the caller refreshes the reports afterwards)."""
    recover_staging(folder)
    key = secret_key(folder.root)
    targets = files if files is not None else inbox_files(folder)
    return [process_file(folder, path, key, dry_run, min_age) for path in targets]


def refresh_reports(folder: DataFolder) -> Path:
    """Regenerate reports/ (called once after a batch of returns, never per file)."""
    from lixiao.reports.build import render_report

    return render_report(folder.store, folder.flow, folder.root / "reports", folder.root / "templates").index


def recover_staging(folder: DataFolder) -> None:
    """After a crash: staged copies of merged files go to the archive; others are dropped (inbox still has them)."""
    staging = folder.root / "archive" / ".staging"
    if not staging.is_dir():
        return
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


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return path.with_name(f"{path.stem}-{stamp}-{os.getpid()}{path.suffix}")


def process_file(folder: DataFolder, path: Path, key: bytes, dry_run: bool = False,
                 min_age: float = 1.0) -> FileOutcome:
    """Take one returned file exactly once: the store and the ledger change in one transaction."""
    name = path.name
    try:
        stat = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        return FileOutcome(name, "deferred", reasons=["文件已不存在（可能被移走）"])
    except OSError as exc:
        return FileOutcome(name, "deferred", reasons=[f"暂时无法读取：{exc.strerror}"])
    young = time.time() - stat.st_mtime < max(min_age, 0.0)
    if len(data) != stat.st_size or (young and min_age > 0):
        return FileOutcome(name, "deferred", reasons=["文件还在写入（大小或时间未稳定），稍后再处理"])
    digest_hex = hashlib.sha256(data).hexdigest()
    store = folder.store
    previous = store.ledger(digest_hex)
    if previous and previous["outcome"] in OUTCOMES:
        return _seen_before(folder, path, digest_hex, previous, dry_run)
    verdict = sniff(data)
    if not verdict.ok and verdict.retry and time.time() - stat.st_mtime < 120:
        return FileOutcome(name, "deferred", reasons=[verdict.message], hash=digest_hex)
    if not dry_run:
        with store.transaction():
            store.set_ledger(digest_hex, name, "received")
        write_atomically(folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx", data)
        with store.transaction():
            store.set_ledger(digest_hex, name, "staged")
    if not verdict.ok:
        return _refuse(folder, path, digest_hex, "rejected", verdict.code, verdict.message, dry_run)
    parsed = parse_untrusted(data, key)
    if not parsed.ok or parsed.returned is None:
        outcome = "quarantined" if parsed.code in ("timeout", "parser_crashed") else "rejected"
        return _refuse(folder, path, digest_hex, outcome, parsed.code, parsed.message, dry_run)
    returned = returned_from_dict(parsed.returned)
    problem = _token_problem(folder, returned) or _structure_problem(returned)
    if problem:
        return _refuse(folder, path, digest_hex, "rejected", problem[0], problem[1], dry_run)
    payload = returned.token.payload or {}
    workbook = store.workbook(payload["workbook_id"]) or {}
    baseline = json.loads(workbook["baseline"])
    if digest(baseline) != payload.get("baseline_hash"):
        return _refuse(folder, path, digest_hex, "rejected", "baseline_mismatch",
                       "工作簿的签发记录与数据库不一致（数据库可能从旧备份恢复）；请重新签发", dry_run)
    return _merge(folder, path, data, digest_hex, returned, workbook, baseline, dry_run)


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
    """A valid token on content that is not that workbook (its sheet or every step column missing)."""
    payload = returned.token.payload or {}
    missing_columns = {a.step for a in returned.anomalies if a.code == "column_missing"}
    if any(a.code in ("sheet_missing", "header_missing") and a.sheet in ("办理", "解除限制")
           for a in returned.anomalies):
        return ("structure_mismatch", "工作簿的“办理”表或表头被删除或改名；请交回系统发给您的原文件")
    steps = payload.get("steps", {})
    if payload.get("kind") == "office" and steps and missing_columns >= set(steps.values()):
        return ("token_mismatch", "工作簿标识与内容不符（标识可能是从另一份工作簿复制来的）；请交回系统发给您的原文件")
    return None


def _seen_before(folder: DataFolder, path: Path, digest_hex: str, previous: dict[str, Any],
                 dry_run: bool) -> FileOutcome:
    """The same bytes again: nothing changes; the extra copy leaves the inbox."""
    outcome = "duplicate" if previous["outcome"] in ("merged", "duplicate") else previous["outcome"]
    when = previous["updated_at"][:16].replace("T", " ")
    reason = f"内容与 {when} 处理过的“{previous['file_name']}”完全相同，未重复记录"
    refusal: dict[str, str] = {}
    if outcome != "duplicate":  # refused before: say again why, the way the first refusal did
        refusal = json.loads(previous["detail"] or "{}")
        reason = f"{refusal.get('code', outcome)}：{refusal.get('message', '')}（{reason}）"
    if not dry_run:
        archived = folder.root / "archive" / f"{digest_hex}.xlsx"
        staged = folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx"
        if previous["outcome"] == "merged" and not archived.exists():
            if staged.exists():
                staged.replace(archived)  # crash between commit and archive: finish the move now
            else:
                write_atomically(archived, path.read_bytes())
        if path.parent == folder.root / "inbox":
            if outcome == "duplicate":
                path.unlink(missing_ok=True)
            else:
                target = _unique(folder.root / "rejected" / path.name)
                path.replace(target)
                _explain(target, path.name, outcome, refusal.get("code", outcome), refusal.get("message", ""),
                         digest_hex)
        with folder.store.transaction():
            folder.store.append_audit([{"kind": "return", "decision": "duplicate", "source": f"file:{path.name}",
                                        "source_hash": digest_hex, "detail": previous["file_name"]}])
    return FileOutcome(path.name, outcome, reasons=[reason], hash=digest_hex)


def _refuse(folder: DataFolder, path: Path, digest_hex: str, outcome: str, code: str, message: str,
            dry_run: bool) -> FileOutcome:
    """Refuse a whole file: ledger row, move to rejected/ with a Chinese explanation beside it."""
    result = FileOutcome(path.name, outcome, reasons=[f"{code}：{message}"], hash=digest_hex)
    if dry_run:
        return result
    store = folder.store
    with store.transaction():
        detail = json.dumps({"code": code, "message": message}, ensure_ascii=False)
        store.set_ledger(digest_hex, path.name, outcome, outcome, detail=detail)
        store.append_audit([{"kind": "return", "decision": outcome, "source": f"file:{path.name}",
                             "source_hash": digest_hex, "detail": f"{code}：{message}"}])
    target = _unique(folder.root / "rejected" / path.name)
    if path.parent == folder.root / "inbox":
        path.replace(target)
    else:
        write_atomically(target, (folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx").read_bytes())
    _explain(target, path.name, outcome, code, message, digest_hex)
    (folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx").unlink(missing_ok=True)
    return result


def _explain(target: Path, name: str, outcome: str, code: str, message: str, digest_hex: str) -> None:
    """The Chinese explanation written beside a file in rejected/."""
    verdict = "已隔离" if outcome == "quarantined" else "已拒绝"
    note = (f"文件：{name}\n结果：{verdict}（{code}）\n原因：{message}\n"
            f"内容哈希：{digest_hex}\n处理时间：{datetime.now().isoformat(timespec='seconds')}\n"
            "处理办法：请按原因修改后重新交回；如有疑问请联系离校工作协调人。\n")
    target.with_name(target.name + ".说明.txt").write_text(note, "utf-8")


def _names(folder: DataFolder) -> dict[str, str]:
    return {s.code: s.name for s in folder.flow.all_steps()}


def _merge(folder: DataFolder, path: Path, data: bytes, digest_hex: str, returned: Returned,
           workbook: dict[str, Any], baseline: dict[str, Any], dry_run: bool) -> FileOutcome:
    store = folder.store
    payload = returned.token.payload or {}
    students = {s.student_no: s for s in store.students()}
    stored = store.all_status_rows()
    waived: dict[str, set[str]] = {}
    for w in store.active_waivers():
        waived.setdefault(w["student_no"], set()).add(w["step"])
    plan = plan_merge(folder.flow, folder.year, workbook["checkpoint"], baseline,
                      MergeInput(returned.rows, returned.batch, returned.duplicates, returned.waivers),
                      students, stored, waived)
    for anomaly in returned.anomalies:
        if anomaly.code == "bad_mark" and anomaly.student_no:
            plan.refusals.append(_anomaly_refusal(anomaly))
        elif anomaly.code not in ("duplicate_student",):
            plan.warnings.append(f"{anomaly.sheet} {anomaly.cell}：{anomaly.reason}".strip())
    operator = returned.operator or NO_OPERATOR
    if not returned.operator:
        plan.warnings.append("“经办人”未填写；本次记录的操作人为“（未填写经办人）”")
    source = f"workbook:{workbook['id']}"
    result = FileOutcome(path.name, "merged", len(plan.changes) + len(plan.waiver_changes), len(plan.refusals),
                         len(plan.conflicts), plan.warnings[:MAX_REASONS], hash=digest_hex)
    if dry_run:
        return result
    with store.transaction():
        apply_plan(store, plan, source=source, operator=operator, source_hash=digest_hex)
        fault_point("merge")
        store.append_audit(
            [{"kind": "return", "decision": "merged", "source": f"file:{path.name}", "source_hash": digest_hex,
                "operator": operator, "detail": f"{workbook['id']} 记录 {result.applied} 拒绝 {result.refused} "
                                                f"冲突 {result.conflicts}"}])
        store.set_ledger(digest_hex, path.name, "merged", "merged", workbook["id"],
                         json.dumps({"applied": result.applied, "refused": result.refused,
                                     "conflicts": result.conflicts, "operator": operator}, ensure_ascii=False))
    # Only after the commit: archive the exact bytes, then let go of the inbox copy.
    staged = folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx"
    archived = folder.root / "archive" / f"{digest_hex}.xlsx"
    if staged.exists():
        staged.replace(archived)
    else:
        write_atomically(archived, data)
    if path.parent == folder.root / "inbox":
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() == digest_hex:
                path.unlink()
        except FileNotFoundError:
            pass
    result.receipt = _write_receipt(folder, path, digest_hex, payload, operator, plan, students, result)
    return result


def _anomaly_refusal(anomaly: Any) -> Refusal:
    return Refusal(anomaly.student_no, anomaly.step, anomaly.value or "（空）", f"{anomaly.cell}：{anomaly.reason}")


def _write_receipt(folder: DataFolder, path: Path, digest_hex: str, payload: dict[str, Any], operator: str,
                   plan: MergePlan, students: dict[str, Any], result: FileOutcome) -> str:
    names = _names(folder)

    def who(no: str) -> str:
        student = students.get(no)
        return student.name if student else ""

    def label(value: str) -> str:
        return Status(value).label if value else "未办理"

    summary = [
        ("文件", path.name), ("离校点", str(payload.get("title", ""))), ("范围", str(payload.get("scope", ""))),
        ("版本", f"第 {payload.get('generation')} 版"), ("经办人", operator),
        ("处理时间", datetime.now().isoformat(timespec="seconds")), ("结果", "已合并"),
        ("已记录", str(result.applied)), ("被拒绝", str(result.refused)), ("冲突待核对", str(result.conflicts)),
        ("内容哈希", digest_hex),
    ]
    sections = {
        "applied": [[c.student_no, who(c.student_no), names.get(c.step, c.step), label(c.old), c.new.label,
                     {"revoked": "撤销", "batch": c.remark}.get(c.kind, c.remark)] for c in plan.changes]
        + [[w.student_no, who(w.student_no), names.get(w.step, w.step), "", "限制已关闭" if w.lift else "限制已开启",
            w.reason] for w in plan.waiver_changes],
        "refused": [[r.student_no, who(r.student_no), names.get(r.step, r.step), r.value, r.reason]
                    for r in plan.refusals],
        "conflicts": [[c.student_no, who(c.student_no), names.get(c.step, c.step), c.issued, c.returned, c.current]
                      for c in plan.conflicts],
        "warnings": [[w] for w in plan.warnings],
    }
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = _unique(folder.root / "receipts" / f"{stamp}-{Path(path.name).stem}-回执.xlsx")
    write_atomically(target, build_receipt(summary, sections))
    return str(target.relative_to(folder.root))
