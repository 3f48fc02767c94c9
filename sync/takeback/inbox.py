"""What lies in inbox/ and how to read it safely: candidate files, safe names, settings, settle waits."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lixiao.core.manual.identity import mask_ids_in_text
from lixiao.sync.datafolder import SETTINGS, DataFolder, DataFolderError

MAX_NAME = 80  # characters of a file name kept in the ledger, receipts, rejected/ and logs


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The [sync] section of lixiao.toml (every key optional)."""

    max_file_mb: float = 200.0  # a larger file is refused before it is read into memory
    max_revocations: int = 5  # a return revoking more passed cells waits for the coordinator (--confirm)
    max_misaligned_rows: int = 3  # more rows whose 行校验 is off: the whole file is refused
    settle_wait: float = 10.0  # how long one-shot sync waits for a just-copied file to settle
    incomplete_after_minutes: float = 10.0  # an inbox/share file incomplete and unchanged this long is refused
    hold_unknown_senders: bool = False  # [mail] unknown_sender = "hold": a mail return from outside the directory
    require_authentication: bool = False  # [mail] require_authentication: a mail return the server did not pass
    reports: bool = True  # one-shot `lixiao sync` regenerates reports/ after merging (false: run `lixiao report`)

    @property
    def max_bytes(self) -> int:
        """The size cap in bytes."""
        return int(self.max_file_mb * 1024 * 1024)


def sync_settings(root: Path) -> SyncSettings:
    """The folder's [sync] settings (and [mail] unknown_sender), defaults where absent; a wrong value is a clear
    error."""
    try:
        settings = tomllib.loads((root / SETTINGS).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return SyncSettings()
    section = settings.get("sync", {})
    numbers: dict[str, float] = {}
    for name in ("max_file_mb", "max_revocations", "max_misaligned_rows", "settle_wait", "incomplete_after_minutes"):
        if name in section:
            value = section[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise DataFolderError(f"{SETTINGS} 中 [sync] {name} 应为非负数，现为 {value!r}")
            numbers[name] = value
    reports = section.get("reports", True)
    if not isinstance(reports, bool):
        raise DataFolderError(f"{SETTINGS} 中 [sync] reports 应为 true 或 false，现为 {reports!r}")
    unknown = settings.get("mail", {}).get("unknown_sender", "flag")
    if unknown not in ("flag", "hold"):
        raise DataFolderError(f"{SETTINGS} 中 [mail] unknown_sender 只能是 \"flag\"（处理并标注）或 \"hold\""
                              f"（暂缓，待协调人确认），现为 {unknown!r}")
    defaults = SyncSettings()
    return SyncSettings(max_file_mb=float(numbers.get("max_file_mb", defaults.max_file_mb)),
                        max_revocations=int(numbers.get("max_revocations", defaults.max_revocations)),
                        max_misaligned_rows=int(numbers.get("max_misaligned_rows", defaults.max_misaligned_rows)),
                        settle_wait=float(numbers.get("settle_wait", defaults.settle_wait)),
                        incomplete_after_minutes=float(numbers.get("incomplete_after_minutes",
                                                                   defaults.incomplete_after_minutes)),
                        hold_unknown_senders=unknown == "hold", reports=reports,
                        require_authentication=settings.get("mail", {}).get("require_authentication") is True)


def decoded_name(raw: bytes) -> str:
    """The text of a file name's bytes as people wrote them: UTF-8, else GB18030 (what a Windows zip unpacked on
    Linux, or an old mail client, gives — GBK and GB2312 are its subsets), else UTF-8 with � for what neither
    reads."""
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")


def safe_name(name: str, limit: int = MAX_NAME) -> str:
    """A file name fit for the ledger, receipts, logs and rejected/: valid UTF-8 (a name whose bytes are not,
    as left by unzipping a Windows archive, read as GB18030: ``decoded_name``), no control characters, no
    leading dots, at most ``limit`` characters (the extension kept), 身份证号 masked."""
    text = decoded_name(os.fsencode(name))
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


INBOX_DEPTH = 8  # subfolders of inbox/ looked into (an unzipped archive makes one or two)


def inbox_files(folder: DataFolder) -> list[Path]:
    """Candidate entries in inbox/ and its subfolders (debris skipped; links and other odd entries kept, to be
    refused with a reason; links to folders are not followed), oldest first."""
    return inbox_entries(folder.root)


def inbox_entries(root: Path) -> list[Path]:
    """``inbox_files`` of the data folder at ``root``, without opening its store (lixiao watch --check)."""
    found: list[tuple[float, bytes, Path]] = []
    _scan(root / "inbox", INBOX_DEPTH, found)
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


def wait_until_settled(paths: list[Path], min_age: float, bound: float) -> None:
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
            if not stat.S_ISREG(info.st_mode):
                continue  # a link or a FIFO is refused at once, never waited for
            snapshot = (info.st_size, info.st_mtime_ns)
            if time.time() - info.st_mtime < min_age or last.get(path, snapshot) != snapshot:
                busy = True
            last[path] = snapshot
        if not busy:
            return
        time.sleep(0.2)


def unique_path(path: Path) -> Path:
    if not path.exists():
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.stem}-{stamp}-{os.getpid()}{path.suffix}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{stamp}-{os.getpid()}-{counter}{path.suffix}")
        counter += 1
    return candidate


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file, never following a link or opening a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IsADirectoryError(errno.EINVAL, "不是普通文件")
        return handle.read()


def hash_regular(path: Path) -> str:
    """The SHA-256 of a (large) regular file, streamed: nothing big is held in memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
