"""``lixiao verify [--repair]``: the store, its audit chain replayed, its anchor, the archive, receipts and inbox."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lixiao.core.storage.chain import Event, Replay
from lixiao.core.storage.guard import mark_damaged
from lixiao.core.storage.ledger import LedgerRow, LedgerState
from lixiao.core.storage.store import DAMAGED, Store, StoreError
from lixiao.core.storage.trusted import TrustedDifferences, TrustedReplay
from lixiao.sync.datafolder import DataFolder, secret_key
from lixiao.sync.messages import os_error_text

from .arrival import missing_part
from .inbox import decoded_name, is_debris
from .pipeline import process_file

INBOX_GRACE_SECONDS = 120
RECEIPT_HASH = re.compile(r"-([0-9a-f]{12})-回执\.xlsx$")
CHAIN_LINES = 5
BACKUP_ONLY = ("只能用 lixiao backup 的备份恢复：停止 lixiao，恢复备份（见 README“备份与恢复”），再运行 "
               "lixiao verify --repair，它会重新处理比备份新的存档文件")

Progress = Callable[[int, int], None]


class BackupOnlyError(RuntimeError):
    """The damage cannot be repaired in place: only a backup restores it."""


@dataclass
class Findings:
    """What verify found: damage (the store refuses writes while it lasts) and files waiting in inbox/."""

    damage: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    chain_broken: bool = False
    sqlite_broken: bool = False
    tail: str = ""
    replay: Replay | None = None
    trusted: TrustedReplay | None = None
    differences: TrustedDifferences = field(default_factory=TrustedDifferences)
    unledgered: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every problem line, damage first."""
        return self.damage + self.waiting


def shown_name(path: Path) -> str:
    """A file name safe to print whatever bytes it holds (a non-UTF-8 name read as GB18030, never crashed on)."""
    return decoded_name(os.fsencode(path.name))


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _sha256(path: Path) -> str:
    return hashlib.sha256(_read(path)).hexdigest()


def check_folder(folder: DataFolder, progress: Progress | None = None) -> Findings:
    """Every integrity problem of a data folder (empty lists when all verifies)."""
    store, found = folder.store, Findings()
    # PRAGMA integrity_check runs in C without the GIL: on its own connection beside the replay.
    sqlite: list[str] = []
    worker = threading.Thread(target=_sqlite_check, args=(store.path, sqlite))
    worker.start()
    # Another process (lixiao watch) may commit meanwhile: its anchor, archived file and receipt follow its
    # commit, so they are read before the snapshot the tables and the chain are read in.
    anchor = store.anchor()
    archived = _listing(folder.root / "archive", "*.xlsx")
    receipts = _listing(folder.root / "receipts", "*-回执.xlsx")
    try:
        with store.snapshot():
            found.replay = store.replay(progress)
            tables = store.table_problems(found.replay)
            found.tail = store.anchor_disagreement(anchor)
            ledger = store.ledger_rows()
            found.trusted = store.trusted_replay()
            found.differences = store.trusted_differences(found.trusted)
    except (sqlite3.DatabaseError, ValueError, KeyError, TypeError, StoreError) as exc:
        worker.join()
        found.sqlite_broken = True
        found.damage += sqlite or [f"数据库已损坏（{exc}）"]
        return found
    worker.join()
    # a deleted students row leaves its statuses pointing at nobody: repairable when the chain restores it
    orphans = [line for line in sqlite if line.startswith("外键错误") and line.endswith("引用 students")]
    if sqlite:
        found.sqlite_broken = len(orphans) < len(sqlite) or not found.differences.student_missing
        found.damage += sqlite
    chain = found.replay.chain
    if chain:
        found.chain_broken = True
        found.damage += chain[:CHAIN_LINES]
        if len(chain) > CHAIN_LINES:
            found.damage.append(f"审计链共 {len(chain)} 处不连续或被改动")
    if found.tail:
        found.damage.append(f"{found.tail}；运行 lixiao verify --repair 接受这一损失（或用备份恢复）")
    found.damage += tables + found.differences.lines()
    _check_archive(folder, ledger, archived, found)
    _check_receipts(ledger, receipts, found)
    _check_missing_receipts(folder, ledger, found)
    _check_held(folder, ledger, found)
    _check_inbox(folder, ledger, found)
    return found


def _sqlite_check(path: Path, out: list[str]) -> None:
    try:
        store = Store.open(path, guard=False)
    except Exception as exc:  # noqa: BLE001 - reported as a problem line, never a traceback
        out.append(str(exc))
        return
    try:
        out += store.sqlite_problems()
    except sqlite3.DatabaseError as exc:
        out.append(f"数据库已损坏（{exc}）")
    finally:
        store.close()


def _listing(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern``, oldest first (none when the folder is missing)."""
    try:
        return sorted(folder.glob(pattern), key=lambda p: (p.stat().st_mtime, p.name))
    except OSError:
        return []


def _check_archive(folder: DataFolder, ledger: list[LedgerRow], files: list[Path], found: Findings) -> None:
    archive = folder.root / "archive"
    known = {row.hash for row in ledger}
    decided = {row.hash for row in ledger if row.outcome is not None}
    for row in ledger:
        if row.outcome is not LedgerState.MERGED:
            continue
        path = archive / f"{row.hash}.xlsx"
        staged = archive / ".staging" / path.name
        if not path.exists() and staged.exists() and _sha256(staged) == row.hash:
            # a crash between the commit and the move: the next sync or watch start finishes it
            found.waiting.append(f"“{row.file_name}”已合并，存档在中断前未完成（archive/.staging/ 中有原件）；"
                                 "运行 lixiao sync 或启动 lixiao watch 即可完成")
        elif not path.exists():
            found.damage.append(f"已合并的文件“{row.file_name}”在 archive/ 中找不到（{str(row.hash)[:12]}…）；"
                                "请把该文件的原件放回 archive/，或用备份恢复")
        elif _sha256(path) != row.hash:
            found.damage.append(f"archive/{path.name} 的内容与其哈希不符（文件被改动）；请用备份中的原件替换")
    for path in files:
        if path.stem in known:
            continue  # its content is checked above when it was merged
        digest = _sha256(path)
        if digest in decided:
            continue
        found.damage.append(f"archive/{shown_name(path)} 没有台账记录：数据库可能丢失了这次合并；"
                            "运行 lixiao verify --repair")
        found.unledgered.append(path)


def _check_receipts(ledger: list[LedgerRow], receipts: list[Path], found: Findings) -> None:
    prefixes = {row.hash[:12] for row in ledger}
    for path in receipts:
        match = RECEIPT_HASH.search(shown_name(path))
        if match and match.group(1) not in prefixes:
            found.damage.append(f"回执 receipts/{shown_name(path)} 没有对应的台账记录：数据库可能丢失了这次合并；"
                                "运行 lixiao verify --repair（archive/ 中也没有该文件时，请用备份恢复）")


def _check_held(folder: DataFolder, ledger: list[LedgerRow], found: Findings) -> None:
    """A file in held/ must be a return the ledger holds for confirmation (else the chain lost its "held")."""
    held = {row.hash for row in ledger if row.outcome is LedgerState.HELD}
    folder_ = folder.root / "held"
    for path in sorted(folder_.glob("*.xlsx")) if folder_.is_dir() else []:
        try:
            digest = _sha256(path)
        except OSError:
            continue
        if digest not in held:
            found.damage.append(f"held/{shown_name(path)} 没有待确认记录（数据库可能丢失了这次暂缓）；"
                                "运行 lixiao verify --repair 把它放回 inbox/ 重新处理")


def _check_missing_receipts(folder: DataFolder, ledger: list[LedgerRow], found: Findings) -> None:
    """A merged or held return whose receipt is not written yet (a crash after the commit): the next sync or
    watch start writes it from the ledger."""
    for row in ledger:
        if row.outcome not in (LedgerState.MERGED, LedgerState.HELD):
            continue
        receipt = row.details.receipt
        if receipt and not (folder.root / receipt).exists():
            found.waiting.append(f"“{row.file_name}”的回执尚未写出（处理在写回执前中断）；"
                                 "运行 lixiao sync 或启动 lixiao watch 即可补写")


STALE_DEBRIS_SECONDS = 3600  # an editor's temp or lock file older than this was not cleaned up by its editor


def _check_inbox(folder: DataFolder, ledger: list[LedgerRow], found: Findings) -> None:
    known = {row.hash for row in ledger}
    now = time.time()
    inbox = folder.root / "inbox"
    if not inbox.is_dir():
        found.waiting.append("收件箱 inbox/ 无法读取；请检查文件夹权限")
        return
    for path in sorted(p for p in inbox.rglob("*") if not p.is_dir()):
        name = shown_name(path)
        try:
            age = now - path.lstat().st_mtime
            if is_debris(path):
                if age > STALE_DEBRIS_SECONDS and path.stat().st_size > 0:
                    found.waiting.append(f"收件箱中的“{name}”看起来是编辑软件的临时文件，没有处理；"
                                         "如果它是交回的工作簿，请改名为 .xlsx 后重新放入 inbox/")
                continue
            if not path.is_file() or age < INBOX_GRACE_SECONDS:
                continue
            data = _read(path)
        except OSError as exc:
            found.waiting.append(f"收件箱中的“{name}”无法读取（{os_error_text(exc)}）；"
                                 "请检查文件权限后运行 lixiao sync")
            continue
        missing = missing_part(data)  # a copy still arriving keeps its source's old mtime: not forgotten, arriving
        if missing:
            found.waiting.append(f"收件箱中的“{name}”还没有复制完整（{missing}），复制完后会被处理；"
                                 "如果复制早已结束，请重新复制一次")
        elif hashlib.sha256(data).hexdigest() not in known:
            found.waiting.append(f"收件箱中的“{name}”已放置超过 {INBOX_GRACE_SECONDS} 秒仍未处理（请运行 lixiao sync）")


def folder_problems(folder: DataFolder) -> list[str]:
    """Every integrity problem found (empty when all verifies)."""
    return check_folder(folder).problems


def record_findings(folder: DataFolder, found: Findings) -> None:
    """Leave ``store.damaged`` while there is damage (writing commands refuse), remove it once none is left."""
    if found.damage:
        mark_damaged(folder.store.path, found.damage)
    else:
        (folder.root / DAMAGED).unlink(missing_ok=True)


def repair_folder(folder: DataFolder, operator: str, progress: Progress | None = None) -> list[str]:
    """``verify --repair``: accept a lost chain tail, restore rows from the replayed chain, then re-process the
    archived returns the ledger lacks (oldest first). Returns what was done; raises BackupOnlyError when the
    chain or the SQLite file itself is broken."""
    found = check_folder(folder, progress)
    if found.sqlite_broken or found.chain_broken or found.differences.workbooks:
        what = ("数据库文件已损坏" if found.sqlite_broken else "审计链中间的记录被改动或删除" if found.chain_broken
                else "已签发工作簿的记录被改动或删除")
        raise BackupOnlyError(f"{what}，无法就地修复；{BACKUP_ONLY}")
    store, done = folder.store, []
    if found.tail:
        anchor = store.anchor() or (0, "")
        head = store.head()
        note = f"审计链尾部丢失：锚点第 {anchor[0]} 条，数据库第 {head[0]} 条；已接受"
        with store.transaction():
            store.append_audit([Event("repair", decision="tail_accepted", source="verify --repair",
                                      operator=operator, detail=note)])
        store.write_anchor(force=True)
        done.append(note)
    assert found.replay is not None and found.trusted is not None
    with store.transaction():  # students first: a restored status may belong to a deleted student
        restored = store.repair_trusted(found.trusted, found.differences, operator)
    restored += store.repair_from_replay(found.replay, operator)
    if found.differences.student_extra:
        with store.transaction():
            restored += store.drop_unaudited_students(found.differences)
    if restored:
        done.append(f"按审计记录恢复 {len(restored)} 处：" + "；".join(restored[:10])
                    + ("…" if len(restored) > 10 else ""))
    ledger = {row.hash: row.outcome for row in store.ledger_rows()}
    key = secret_key(folder.root)
    # every archived return the ledger (as the chain now says) has not decided — lost with the WAL, or
    # half-applied when the tail cut through its events — is processed again; done cells are no-ops
    archived = sorted((p for p in (folder.root / "archive").glob("*.xlsx") if ledger.get(p.stem) is None),
                      key=lambda p: (p.stat().st_mtime, p.name))
    for path in archived:
        if _sha256(path) == path.stem:
            outcome = process_file(folder, path, key, min_age=0)
            done.append(f"重新处理 archive/{shown_name(path)}：{outcome.outcome}，记录 {outcome.applied}")
    done += _rehold(folder, key, ledger)
    return done


def _rehold(folder: DataFolder, key: bytes, ledger: dict[str, LedgerState | None]) -> list[str]:
    """A held return whose "held" the chain lost is taken again at once, as it would be now: held again (back in
    held/, the ledger HELD, its receipt rewritten) — or merged or refused, when the store now says so."""
    done = []
    held = folder.root / "held"
    for path in sorted(held.glob("*.xlsx")) if held.is_dir() else []:
        if ledger.get(_sha256(path)) is LedgerState.HELD:
            continue
        target = folder.root / "inbox" / path.name
        if target.exists():
            done.append(f"held/{shown_name(path)} 的暂缓记录已随审计链尾部丢失，inbox/ 中已有同名文件，未处理；"
                        "请把它改名后放入 inbox/")
            continue
        path.replace(target)
        path.with_name(path.name + ".说明.txt").unlink(missing_ok=True)
        outcome = process_file(folder, target, key, min_age=0)
        done.append(f"held/{shown_name(path)} 的暂缓记录已随审计链尾部丢失，已重新处理：{outcome.outcome}")
    return done
