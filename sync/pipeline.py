"""The sync pipeline: one returned file → ledger, checks, sandboxed parse, three-way merge, archive, receipt."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import time
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from lixiao.core.faults import fault_point
from lixiao.core.files import write_atomically
from lixiao.core.identity import mask_ids_in_text
from lixiao.core.merge import MAIN, WAIVERS, Change, MergeInput, MergePlan, Refusal, apply_plan, plan_merge
from lixiao.core.model import Status
from lixiao.core.signing import digest, row_secret
from lixiao.core.signing import row_key as signing_row_key
from lixiao.workbooks.reader import Returned, returned_from_dict
from lixiao.workbooks.receipt import build_receipt
from lixiao.workbooks.sandbox import parse_untrusted
from lixiao.workbooks.sniff import sniff

from .datafolder import SETTINGS, DataFolder, DataFolderError, secret_key
from .messages import os_error_text

OUTCOMES = ("merged", "duplicate", "rejected", "quarantined", "deferred", "held")
NO_OPERATOR = "（未填写经办人）"
MAX_REASONS = 50
MAX_NAME = 80  # characters of a file name kept in the ledger, receipts, rejected/ and logs
HELD = "held"  # folder for returns waiting for the coordinator's confirmation


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The [sync] section of lixiao.toml (every key optional)."""

    max_file_mb: float = 200.0  # a larger file is refused before it is read into memory
    max_revocations: int = 5  # a return revoking more passed cells waits for the coordinator (--confirm)
    max_misaligned_rows: int = 3  # more rows whose 行校验 is off: the whole file is refused
    settle_wait: float = 10.0  # how long one-shot sync waits for a just-copied file to settle

    @property
    def max_bytes(self) -> int:
        """The size cap in bytes."""
        return int(self.max_file_mb * 1024 * 1024)


def sync_settings(root: Path) -> SyncSettings:
    """The folder's [sync] settings, defaults where absent; a wrong value is a clear error."""
    try:
        section = tomllib.loads((root / SETTINGS).read_text("utf-8")).get("sync", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return SyncSettings()
    values: dict[str, Any] = {}
    for name, kind in (("max_file_mb", float), ("max_revocations", int), ("max_misaligned_rows", int),
                       ("settle_wait", float)):
        if name in section:
            value = section[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise DataFolderError(f"{SETTINGS} 中 [sync] {name} 应为非负数，现为 {value!r}")
            values[name] = kind(value)
    return SyncSettings(**values)


def safe_name(name: str, limit: int = MAX_NAME) -> str:
    """A file name fit for the ledger, receipts, logs and rejected/: valid UTF-8 (undecodable bytes, as left
    by unzipping a Windows archive, become �), no control characters, no leading dots, at most ``limit``
    characters (the extension kept), 身份证号 masked."""
    text = os.fsencode(name).decode("utf-8", "replace")
    text = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text)
    text = mask_ids_in_text(text.strip().lstrip(".").strip()) or "未命名"
    if len(text) > limit:
        suffix = Path(text).suffix if len(Path(text).suffix) <= 10 else ""
        text = text[: limit - len(suffix) - 1] + "…" + suffix
    return text


_EXCEL_TEMP = re.compile(r"^[0-9A-F]{8}$")  # Excel saves through a temp file named like 3A9F0C21, no extension
_SPREADSHEET = (".xlsx", ".xlsm", ".xls", ".xlsb", ".et", ".ods", ".csv")


def is_debris(path: Path) -> bool:
    """Editor and copy debris that is never a returned workbook: ~$x, .~lock.x#, ._x (macOS), *.tmp, Excel's
    extensionless temp files, hidden files that are not spreadsheets (rsync's .name.XXXXXX). A return saved
    without an extension, or with a leading dot, is taken like any other (the bytes say what it is)."""
    name = path.name
    if name.startswith(("~$", ".~lock.", "._", ".DS_Store")) or name.endswith(("#", ".tmp", ".partial", "~")):
        return True
    if name.startswith(".") and path.suffix.lower() not in _SPREADSHEET:
        return True
    return bool(_EXCEL_TEMP.match(name)) or path.suffix.lower() in (".txt", ".crdownload", ".part", ".swp")


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


INBOX_DEPTH = 8  # subfolders of inbox/ looked into (an unzipped archive makes one or two)


def inbox_files(folder: DataFolder) -> list[Path]:
    """Candidate entries in inbox/ and its subfolders (debris skipped; links and other odd entries kept, to be
    refused with a reason; links to folders are not followed), oldest first."""
    found: list[tuple[float, bytes, Path]] = []
    _scan(folder.root / "inbox", INBOX_DEPTH, found)
    return [path for _, _, path in sorted(found)]


def _scan(directory: Path, depth: int, found: list[tuple[float, bytes, Path]]) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            if depth > 0 and not entry.name.startswith("."):
                _scan(path, depth - 1, found)
        elif not is_debris(path):
            found.append((info.st_mtime, os.fsencode(entry.path), path))


def in_inbox(folder: DataFolder, path: Path) -> bool:
    """True for a file inside inbox/ or one of its subfolders (such a file leaves the inbox once taken)."""
    return folder.root / "inbox" in path.parents


def sync(folder: DataFolder, files: list[Path] | None = None, dry_run: bool = False,
         min_age: float = 1.0, confirm: bool = False) -> list[FileOutcome]:
    """Process the given files, or the whole inbox, once (the caller refreshes the reports afterwards).

    Inbox files copied a moment ago are waited for (up to [sync] settle_wait seconds) rather than deferred,
    so that `cp f inbox/ && lixiao sync` processes f.
    """
    recover_staging(folder)
    key = secret_key(folder.root)
    settings = sync_settings(folder.root)
    if confirm:
        for path in files or []:
            _must_be_held(folder, path)
    if files is None:
        targets = inbox_files(folder)
        _wait_until_settled(targets, min_age, settings.settle_wait)
    else:
        targets = files
    return [process_file(folder, path, key, dry_run, min_age, confirm=confirm, settings=settings)
            for path in targets]


def _must_be_held(folder: DataFolder, path: Path) -> None:
    """--confirm applies only to a return the pipeline held: anything else would skip the revocation check."""
    try:
        digest_hex = _hash_regular(path)
    except OSError as exc:
        raise DataFolderError(f"无法读取 {safe_name(path.name)}：{os_error_text(exc)}") from None
    row = folder.store.ledger(digest_hex)
    if row is None or row["outcome"] != HELD:
        raise DataFolderError(f"{safe_name(path.name)} 不是待确认（held/）的文件，--confirm 不适用；"
                              "新交回的文件请直接 lixiao sync 处理")


def _wait_until_settled(paths: list[Path], min_age: float, bound: float) -> None:
    """Sleep until every file is at least ``min_age`` seconds old and unchanged, or ``bound`` seconds passed."""
    deadline = time.monotonic() + bound
    last: dict[Path, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        busy = False
        for path in paths:
            try:
                info = os.lstat(path)
            except OSError:
                continue
            snapshot = (info.st_size, info.st_mtime_ns)
            if time.time() - info.st_mtime < min_age or last.get(path, snapshot) != snapshot:
                busy = True
            last[path] = snapshot
        if not busy:
            return
        time.sleep(0.2)


def refresh_reports(folder: DataFolder) -> Path:
    """Regenerate reports/ (called once after a batch of returns, never per file)."""
    from lixiao.reports.build import render_report

    return render_report(folder.store, folder.flow, folder.root / "reports", folder.root / "templates").index


def recover_staging(folder: DataFolder) -> None:
    """After a crash: staged copies of merged files go to the archive, others are dropped (inbox still has
    them), and a merged or held return whose receipt was not written yet gets it now."""
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
    for row in folder.store.ledger_rows():
        if row["outcome"] in ("merged", HELD):
            detail = _detail(row)
            if detail.get("receipt") and not (folder.root / detail["receipt"]).exists():
                write_receipt(folder, row)


def _detail(row: dict[str, Any]) -> dict[str, Any]:
    try:
        detail = json.loads(row["detail"] or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.stem}-{stamp}-{os.getpid()}{path.suffix}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{stamp}-{os.getpid()}-{counter}{path.suffix}")
        counter += 1
    return candidate


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file, never following a link or opening a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IsADirectoryError(errno.EINVAL, "不是普通文件")
        return handle.read()


def _hash_regular(path: Path) -> str:
    """The SHA-256 of a (large) regular file, streamed: nothing big is held in memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def process_file(folder: DataFolder, path: Path, key: bytes, dry_run: bool = False,
                 min_age: float = 1.0, *, confirm: bool = False, settings: SyncSettings | None = None) -> FileOutcome:
    """Take one returned file exactly once: the store and the ledger change in one transaction.

    ``confirm``: the coordinator confirms a return held for review (too many revocations); it is merged.
    """
    name = safe_name(path.name)
    settings = settings or sync_settings(folder.root)
    with contextlib.suppress(OSError):
        path = path.parent.resolve() / path.name  # held/x.xlsx given relative to the data folder is held/ too
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return FileOutcome(name, "deferred", reasons=["文件已不存在（可能被移走）"])
    except OSError as exc:
        return FileOutcome(name, "deferred", reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    if not stat.S_ISREG(info.st_mode):
        return _refuse_entry(folder, path, name, info, dry_run)
    young = time.time() - info.st_mtime < max(min_age, 0.0)
    if young and min_age > 0:
        return FileOutcome(name, "deferred", reasons=["文件还在写入（大小或时间未稳定），稍后再处理"])
    if info.st_size > settings.max_bytes:
        return _refuse_large(folder, path, name, info.st_size, settings, dry_run)
    try:
        data = _read_regular(path)
    except FileNotFoundError:
        return FileOutcome(name, "deferred", reasons=["文件已不存在（可能被移走）"])
    except OSError as exc:
        return FileOutcome(name, "deferred", reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    if len(data) != info.st_size:
        return FileOutcome(name, "deferred", reasons=["文件还在写入（大小或时间未稳定），稍后再处理"])
    digest_hex = hashlib.sha256(data).hexdigest()
    store = folder.store
    previous = store.ledger(digest_hex)
    if previous and previous["outcome"] in OUTCOMES and not (confirm and previous["outcome"] == HELD):
        return _seen_before(folder, path, name, digest_hex, previous, dry_run)
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
        return _refuse(folder, path, name, digest_hex, "rejected", verdict.code, verdict.message, dry_run)
    parsed = parse_untrusted(data, key)
    if not parsed.ok or parsed.returned is None:
        outcome = "quarantined" if parsed.code in ("timeout", "parser_crashed") else "rejected"
        return _refuse(folder, path, name, digest_hex, outcome, parsed.code, parsed.message, dry_run)
    returned = returned_from_dict(parsed.returned)
    problem = _token_problem(folder, returned) or _structure_problem(returned)
    if problem:
        return _refuse(folder, path, name, digest_hex, "rejected", problem[0], problem[1], dry_run)
    payload = returned.token.payload or {}
    workbook = store.workbook(payload["workbook_id"]) or {}
    baseline = json.loads(workbook["baseline"])
    if digest(baseline) != payload.get("baseline_hash"):
        return _refuse(folder, path, name, digest_hex, "rejected", "baseline_mismatch",
                       "工作簿的签发记录与数据库不一致（数据库可能从旧备份恢复）；请重新签发", dry_run)
    return _merge(folder, _Return(path, name, data, digest_hex, returned, workbook, baseline), key, settings,
                  dry_run, confirm)


def _refuse_entry(folder: DataFolder, path: Path, name: str, info: os.stat_result, dry_run: bool) -> FileOutcome:
    """A link, FIFO, socket or device in the inbox: never followed or opened; the entry is removed and a
    Chinese explanation left in rejected/."""
    kind = "符号链接" if stat.S_ISLNK(info.st_mode) else "特殊文件（管道、设备或套接字）"
    message = (f"收件箱中的“{name}”是{kind}，不是普通文件；出于安全考虑不会读取。"
               "请把工作簿文件本身（而不是链接）放入收件箱")
    result = FileOutcome(name, "rejected", reasons=[f"not_a_file：{message}"])
    if dry_run or not in_inbox(folder, path):
        return result
    with folder.store.transaction():
        folder.store.append_audit([{"kind": "return", "decision": "rejected", "source": f"file:{name}",
                                    "detail": f"not_a_file：{message}"}])
    path.unlink(missing_ok=True)
    target = _unique(folder.root / "rejected" / f"{name}.说明.txt")
    write_atomically(target, _explanation(name, "rejected", "not_a_file", message, "").encode("utf-8"))
    return result


def _refuse_large(folder: DataFolder, path: Path, name: str, size: int, settings: SyncSettings,
                  dry_run: bool) -> FileOutcome:
    """A file over the size cap: hashed as a stream (for the ledger), never read whole, moved to rejected/."""
    message = (f"文件大小 {size / 1024 / 1024:.0f} MB 超过上限 {settings.max_file_mb:g} MB（lixiao.toml [sync] "
               "max_file_mb），不是正常的离校工作簿；请交回系统发给您的原文件")
    try:
        digest_hex = _hash_regular(path)
    except OSError as exc:
        return FileOutcome(name, "deferred", reasons=[f"暂时无法读取：{os_error_text(exc)}"])
    previous = folder.store.ledger(digest_hex)
    if previous and previous["outcome"] in OUTCOMES:
        return _seen_before(folder, path, name, digest_hex, previous, dry_run)
    return _refuse(folder, path, name, digest_hex, "rejected", "too_large", message, dry_run, staged=False)


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


def _seen_before(folder: DataFolder, path: Path, name: str, digest_hex: str, previous: dict[str, Any],
                 dry_run: bool) -> FileOutcome:
    """The same bytes again: nothing changes; the extra copy leaves the inbox."""
    outcome = "duplicate" if previous["outcome"] in ("merged", "duplicate") else previous["outcome"]
    when = previous["updated_at"][:16].replace("T", " ")
    reason = f"内容与 {when} 处理过的“{previous['file_name']}”完全相同，未重复记录"
    refusal = _detail(previous)
    if outcome == HELD:
        reason = f"held：{refusal.get('message', '')}（{reason}）"
    elif outcome != "duplicate":  # refused before: say again why, the way the first refusal did
        reason = f"{refusal.get('code', outcome)}：{refusal.get('message', '')}（{reason}）"
    if not dry_run:
        archived = folder.root / "archive" / f"{digest_hex}.xlsx"
        staged = folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx"
        if previous["outcome"] == "merged" and not archived.exists():
            if staged.exists():
                staged.replace(archived)  # crash between commit and archive: finish the move now
            else:
                write_atomically(archived, _read_regular(path))
        if in_inbox(folder, path):
            if outcome == "duplicate":
                path.unlink(missing_ok=True)
            else:
                home = HELD if outcome == HELD else "rejected"
                target = _unique(folder.root / home / name)
                target.parent.mkdir(exist_ok=True)
                path.replace(target)
                _explain(target, name, outcome, str(refusal.get("code", outcome)), str(refusal.get("message", "")),
                         digest_hex)
        with folder.store.transaction():
            folder.store.append_audit([{"kind": "return", "decision": "duplicate", "source": f"file:{name}",
                                        "source_hash": digest_hex, "detail": previous["file_name"]}])
    return FileOutcome(name, outcome, reasons=[reason], hash=digest_hex)


def _refuse(folder: DataFolder, path: Path, name: str, digest_hex: str, outcome: str, code: str, message: str,
            dry_run: bool, staged: bool = True) -> FileOutcome:
    """Refuse a whole file: ledger row, move to rejected/ with a Chinese explanation beside it."""
    result = FileOutcome(name, outcome, reasons=[f"{code}：{message}"], hash=digest_hex)
    if dry_run:
        return result
    store = folder.store
    with store.transaction():
        detail = json.dumps({"code": code, "message": message}, ensure_ascii=False)
        store.set_ledger(digest_hex, name, outcome, outcome, detail=detail)
        store.append_audit([{"kind": "return", "decision": outcome, "source": f"file:{name}",
                             "source_hash": digest_hex, "detail": f"{code}：{message}"}])
    target = _unique(folder.root / "rejected" / name)
    staging = folder.root / "archive" / ".staging" / f"{digest_hex}.xlsx"
    if in_inbox(folder, path):
        path.replace(target)
    elif staged:
        write_atomically(target, staging.read_bytes())
    _explain(target, name, outcome, code, message, digest_hex)
    staging.unlink(missing_ok=True)
    return result


def _explanation(name: str, outcome: str, code: str, message: str, digest_hex: str) -> str:
    verdict = {"quarantined": "已隔离", HELD: "待协调人确认（尚未生效）"}.get(outcome, "已拒绝")
    code_line = f"错误代码：{code}（供技术支持查询）\n"
    how = ("处理办法：协调人核对无误后运行 lixiao sync --confirm 本文件路径，确认后才会生效；"
           "如有误，请经办人按原因修改后重新交回。\n" if outcome == HELD else
           "处理办法：请按原因修改后重新交回；如有疑问请联系离校工作协调人。\n")
    return (f"文件：{name}\n结果：{verdict}\n原因：{message}\n"
            f"内容哈希：{digest_hex or '（无）'}\n处理时间：{datetime.now().isoformat(timespec='seconds')}\n"
            + how + code_line)


def _explain(target: Path, name: str, outcome: str, code: str, message: str, digest_hex: str) -> None:
    """The Chinese explanation written beside a file in rejected/ or held/."""
    write_atomically(target.with_name(target.name + ".说明.txt"),
                     _explanation(name, outcome, code, message, digest_hex).encode("utf-8"))


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
                detail.update(code=HELD, message=held, pending=_pending(folder, plan))
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
        return _refuse(folder, item.path, item.name, item.hash, "rejected", refused.code, refused.message, dry_run)
    fault_point("receipt")
    # Only after the commit: keep the exact bytes, let go of the returned copy, write the receipt.
    staged = folder.root / "archive" / ".staging" / f"{item.hash}.xlsx"
    if held:
        target = _unique(folder.root / HELD / item.name)
        target.parent.mkdir(exist_ok=True)
        if in_inbox(folder, item.path):
            item.path.replace(target)
        else:
            write_atomically(target, item.data)
        staged.unlink(missing_ok=True)
        _explain(target, item.name, HELD, HELD, held, item.hash)
    else:
        archived = folder.root / "archive" / f"{item.hash}.xlsx"
        if staged.exists():
            staged.replace(archived)
        elif not archived.exists():
            write_atomically(archived, item.data)
        if in_inbox(folder, item.path) or item.path.parent == folder.root / HELD:
            try:
                if hashlib.sha256(_read_regular(item.path)).hexdigest() == item.hash:
                    item.path.unlink()
                    item.path.with_name(item.path.name + ".说明.txt").unlink(missing_ok=True)
            except OSError:
                pass
    row = store.ledger(item.hash)
    if row is not None:
        result.receipt = write_receipt(folder, row)
    return result


def _pending(folder: DataFolder, plan: MergePlan) -> list[str]:
    """What a held return would do once confirmed, one line per cell (for its receipt)."""
    names = {s.code: s.name for s in folder.flow.all_steps()}
    def was(change: Change) -> str:
        return Status(change.old).label if change.old else "未办理"

    lines = [f"确认后：{c.student_no} {names.get(c.step, c.step)}："
             + ("已通过 → 撤销（未办理）" if c.kind == "revoked" else f"{was(c)} → 已通过") for c in plan.changes]
    lines += [f"确认后：{w.student_no} {names.get(w.step, w.step)}：{'解除限制' if w.lift else '重新开启限制'}"
              for w in plan.waiver_changes]
    return [mask_ids_in_text(line) for line in lines[:500]]


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


def write_receipt(folder: DataFolder, row: dict[str, Any]) -> str:
    """Write the receipt (回执) of a merged or held return from what the store holds about it — its ledger row,
    its audit events, refused ticks and conflicts — so that a receipt lost in a crash is rebuilt the same way."""
    detail = _detail(row)
    digest_hex = row["hash"]
    store = folder.store
    names = {s.code: s.name for s in folder.flow.all_steps()}
    events = store.audit_events(digest_hex)
    who = store.student_names({e["student_no"] for e in events}
                              | {r[0] for r in store.refused_of(digest_hex)}
                              | {c[0] for c in store.conflicts_of(digest_hex)})

    def label(value: str) -> str:
        return Status(value).label if value else "未办理"

    held = row["outcome"] == HELD
    summary = [
        ("文件", row["file_name"]), ("离校点", str(detail.get("title", ""))), ("范围", str(detail.get("scope", ""))),
        ("版本", f"第 {detail.get('generation')} 版"), ("经办人", str(detail.get("operator", ""))),
        ("处理时间", str(detail.get("at", row["updated_at"]))),
        ("结果", "待协调人确认（尚未生效）" if held else "已合并"),
        ("已记录", str(detail.get("applied", 0))), ("被拒绝", str(detail.get("refused", 0))),
        ("冲突待核对", str(detail.get("conflicts", 0))), ("内容哈希", digest_hex),
    ]
    if held:
        summary.insert(7, ("原因", str(detail.get("message", ""))))
    head = store.head()
    summary.append(("审计链位置", f"第 {head[0]} 条，{head[1][:16]}"))
    applied = [[e["student_no"], who.get(e["student_no"], ""), names.get(e["step"], e["step"]), label(e["old"]),
                label(e["new"]), {"revoked": "撤销"}.get(e["decision"], e["detail"])]
               for e in events if e["kind"] == "status"]
    applied += [[e["student_no"], who.get(e["student_no"], ""), names.get(e["step"], e["step"]), "",
                 e["new"], e["detail"]] for e in events if e["kind"] == "waiver"]
    sections = {
        "applied": applied,
        "refused": [[no, who.get(no, ""), names.get(step, step), value, reason]
                    for no, step, value, reason in store.refused_of(digest_hex)],
        "conflicts": [[no, who.get(no, ""), names.get(step, step), issued, returned, current]
                      for no, step, issued, returned, current in store.conflicts_of(digest_hex)],
        "warnings": [[w] for w in [*detail.get("pending", []), *detail.get("warnings", [])]],
    }
    masked = {key: [[mask_ids_in_text(str(cell)) for cell in line] for line in lines]
              for key, lines in sections.items()}
    relative = str(detail.get("receipt") or f"receipts/{digest_hex[:12]}-回执.xlsx")
    write_atomically(folder.root / relative, build_receipt(summary, masked))
    return relative
