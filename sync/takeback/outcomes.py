"""What happened to one returned file: its outcome, and refusals with the Chinese explanation left beside them."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from lixiao.core.storage.chain import Event
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.ledger import ORIGIN_REFUSALS, LedgerRow, LedgerState, Origin, ReturnDetail
from lixiao.sync.datafolder import DataFolder
from lixiao.sync.messages import os_error_text

from .inbox import SyncSettings, hash_regular, in_inbox, read_regular, unique_path


class Outcome(StrEnum):
    """What happened to one returned file (`sync --json` outcome): the contract's five, and held."""

    MERGED = "merged"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"
    DEFERRED = "deferred"  # not yet complete on disk (or unreadable for now): tried again later
    HELD = "held"  # waiting for `lixiao sync --confirm`

    @property
    def ledger_state(self) -> LedgerState:
        """The ledger's outcome for a decided file (merged, rejected, quarantined or held)."""
        return LedgerState(self.value)


HELD_FOLDER = "held"  # beside inbox/: returns waiting for the coordinator's confirmation
MAX_REASONS = 50


@dataclass
class FileOutcome:
    """What happened to one file (the `sync --json` element)."""

    file: str
    outcome: Outcome
    applied: int = 0
    refused: int = 0
    conflicts: int = 0
    reasons: list[str] = field(default_factory=list)
    receipt: str = ""
    hash: str = ""

    def as_json(self) -> dict[str, object]:
        """The contract's JSON object for this file."""
        return {"file": self.file, "outcome": self.outcome.value, "applied": self.applied, "refused": self.refused,
                "conflicts": self.conflicts, "reasons": self.reasons, "receipt": self.receipt}


def refuse_entry(folder: DataFolder, path: Path, name: str, info: os.stat_result, dry_run: bool) -> FileOutcome:
    """A link, FIFO, socket or device in the inbox: never followed or opened; the entry is removed and a
    Chinese explanation left in rejected/."""
    kind = "符号链接" if stat.S_ISLNK(info.st_mode) else "特殊文件（管道、设备或套接字）"
    message = (f"收件箱中的“{name}”是{kind}，不是普通文件；出于安全考虑不会读取。"
               "请把工作簿文件本身（而不是链接）放入收件箱")
    result = FileOutcome(name, Outcome.REJECTED, reasons=[f"not_a_file：{message}"])
    if dry_run or not in_inbox(folder, path):
        return result
    with folder.store.transaction():
        folder.store.append_audit([Event("return", decision="rejected", source=f"file:{name}",
                                         detail=f"not_a_file：{message}")])
    path.unlink(missing_ok=True)
    target = unique_path(folder.root / "rejected" / f"{name}.说明.txt")
    write_atomically(target, explanation(name, Outcome.REJECTED, "not_a_file", message, "").encode("utf-8"))
    return result


def refuse_large(folder: DataFolder, path: Path, name: str, size: int, settings: SyncSettings,
                  dry_run: bool) -> FileOutcome:
    """A file over the size cap: hashed as a stream (for the ledger), never read whole, moved to rejected/."""
    message = (f"文件大小 {size / 1024 / 1024:.0f} MB 超过上限 {settings.max_file_mb:g} MB（lixiao.toml [sync] "
               "max_file_mb），不是正常的离校工作簿；请交回系统发给您的原文件")
    try:
        digest_hex = hash_regular(path)
    except OSError as exc:
        return FileOutcome(name, Outcome.DEFERRED, reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    previous = folder.store.ledger(digest_hex)
    if previous and previous.outcome is not None:
        return seen_before(folder, path, name, digest_hex, previous, dry_run)
    return refuse(folder, path, name, digest_hex, Outcome.REJECTED, "too_large", message, dry_run, staged=False)


def seen_before(folder: DataFolder, path: Path | None, name: str, digest_hex: str, previous: LedgerRow,
                 dry_run: bool) -> FileOutcome:
    """The same bytes again: nothing changes; an extra copy in the inbox leaves it (``path`` None: the bytes are
    not a file lixiao may move)."""
    assert previous.outcome is not None
    outcome = {LedgerState.MERGED: Outcome.DUPLICATE, LedgerState.MISDIRECTED: Outcome.REJECTED}.get(
        previous.outcome) or Outcome(previous.outcome.value)
    when = previous.updated_at[:16].replace("T", " ")
    reason = f"内容与 {when} 处理过的“{previous.file_name}”完全相同，未重复记录"
    refusal = previous.details
    if outcome is Outcome.HELD:
        reason = f"held：{refusal.message}（{reason}）"
    elif outcome is not Outcome.DUPLICATE:  # refused before: say again why, the way the first refusal did
        reason = f"{refusal.code or outcome}：{refusal.message}（{reason}）"
    if not dry_run:
        archived = folder.root / "archive" / f"{digest_hex}.xlsx"
        staged = folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx"
        if previous.outcome is LedgerState.MERGED and not archived.exists():
            if staged.exists():
                staged.replace(archived)  # crash between commit and archive: finish the move now
            elif path is not None:
                write_atomically(archived, read_regular(path))
        if path is not None and in_inbox(folder, path):
            if outcome in (Outcome.DUPLICATE, Outcome.HELD):
                path.unlink(missing_ok=True)  # merged, or already waiting in held/: a second copy adds nothing
            else:
                target = unique_path(folder.root / "rejected" / name)
                path.replace(target)
                explain(target, name, outcome, refusal.code or outcome, refusal.message, digest_hex)
        with folder.store.transaction():
            folder.store.append_audit([Event("return", decision="duplicate", source=f"file:{name}",
                                             source_hash=digest_hex, detail=previous.file_name)])
    return FileOutcome(name, outcome, reasons=[reason], hash=digest_hex)


def refuse(folder: DataFolder, path: Path | None, name: str, digest_hex: str, outcome: Outcome, code: str,
           message: str, dry_run: bool, staged: bool = True, origin: Origin | None = None) -> FileOutcome:
    """Refuse a whole file: ledger row, moved (an inbox file) or copied to rejected/ with a Chinese explanation
    beside it. A refusal for where the file came from (``ORIGIN_REFUSALS``) is recorded as misdirected: final
    for that place only."""
    result = FileOutcome(name, outcome, reasons=[f"{code}：{message}"], hash=digest_hex)
    if dry_run:
        return result
    store = folder.store
    state = LedgerState.MISDIRECTED if code in ORIGIN_REFUSALS else outcome.ledger_state
    with store.transaction():
        store.set_ledger(digest_hex, name, state, state,
                         detail=ReturnDetail(code=code, message=message, origin=origin.describe() if origin else ""),
                         origin=origin)
        store.append_audit([Event("return", decision=outcome.value, source=f"file:{name}", source_hash=digest_hex,
                                  detail=f"{code}：{message}")])
    target = unique_path(folder.root / "rejected" / name)
    staging = folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx"
    if path is not None and in_inbox(folder, path):
        path.replace(target)
    elif staged:
        write_atomically(target, staging.read_bytes())
    explain(target, name, outcome, code, message, digest_hex)
    staging.unlink(missing_ok=True)
    return result


def explanation(name: str, outcome: Outcome, code: str, message: str, digest_hex: str) -> str:
    verdict = {Outcome.QUARANTINED: "已隔离", Outcome.HELD: "待协调人确认（尚未生效）"}.get(outcome, "已拒绝")
    code_line = f"错误代码：{code}（供技术支持查询）\n"
    how = ("处理办法：协调人核对无误后运行 lixiao sync --confirm 本文件路径，确认后才会生效；"
           "如有误，请经办人按原因修改后重新交回。\n" if outcome is Outcome.HELD else
           "处理办法：请按原因修改后重新交回；如有疑问请联系离校工作协调人。\n")
    return (f"文件：{name}\n结果：{verdict}\n原因：{message}\n"
            f"内容哈希：{digest_hex or '（无）'}\n处理时间：{datetime.now().isoformat(timespec='seconds')}\n"
            + how + code_line)


def explain(target: Path, name: str, outcome: Outcome, code: str, message: str, digest_hex: str) -> None:
    """The Chinese explanation written beside a file in rejected/ or held/."""
    write_atomically(target.with_name(target.name + ".说明.txt"),
                     explanation(name, outcome, code, message, digest_hex).encode("utf-8"))
