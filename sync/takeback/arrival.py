"""Files still arriving in inbox/ or an office's 交回/: judged by their bytes, never by their age.

A Windows copy (Explorer, robocopy) keeps the source's modification time, so a file still being copied can look
hours old. A zip is whole only once its end-of-central-directory record is there; until then the file is left
where it is — not refused, not moved, no ledger decision — and taken once it is whole. One that stays incomplete
with the same content for ``[sync] incomplete_after_minutes``, counted from when lixiao first saw it so (kept in
``arriving.json`` in the data folder, across polls of the daemon and one-shot ``lixiao sync`` runs), is refused
with what to do.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.ledger import Channel
from lixiao.sync.datafolder import DataFolder
from lixiao.workbooks.sniff import ZIP_MAGIC, Verdict

from .checks import Incoming
from .inbox import SyncSettings
from .outcomes import FileOutcome, Outcome

ARRIVING = "arriving.json"  # in the data folder: {path: {"hash": content hash, "since": first seen (epoch s)}}
FORGET_AFTER = 7 * 24 * 3600  # a record this old (its file long gone or decided elsewhere) is dropped
EOCD = b"PK\x05\x06"  # a zip's end-of-central-directory record: 22 bytes and a comment, the file's last bytes
EOCD_SIZE = 22
ZIP64_LOCATOR = b"PK\x06\x07"
WATCHED = (Channel.INBOX, Channel.SHARE)  # where files are copied in by others, and may be caught half-way


def now() -> float:
    """The wall clock (a seam for tests: the ten-minute rule is tested without sleeping)."""
    return time.time()


def zip_complete(data: bytes) -> bool:
    """True when ``data`` ends with a zip's end-of-central-directory record (its comment running exactly to the
    last byte) and the central directory it points to lies before it. Only the tail is looked at."""
    start = max(0, len(data) - EOCD_SIZE - 0xFFFF)
    end = len(data)
    while (pos := data.rfind(EOCD, start, end)) >= 0:
        comment = int.from_bytes(data[pos + 20:pos + 22], "little")
        if pos + EOCD_SIZE + comment == len(data):
            size = int.from_bytes(data[pos + 12:pos + 16], "little")
            offset = int.from_bytes(data[pos + 16:pos + 20], "little")
            if 0xFFFFFFFF in (size, offset):  # zip64: the real numbers are in a record just before this one
                return data[max(0, pos - 20):pos].startswith(ZIP64_LOCATOR)
            return offset + size <= pos
        end = pos + len(EOCD) - 1  # an earlier match that is not this one
    return False


def missing_part(data: bytes) -> str:
    """What is still missing from a file that may be arriving, in plain Chinese ('' when it has arrived whole).
    Bytes that are not a zip (an .xls, a CSV, a web page) are not waited for: the sniffer names them at once."""
    if not data:
        return "文件还是空的"
    if not data[:4].strip(b"\x00"):
        return "文件已占好位置，内容还没有写入"  # space reserved by the copy before its bytes arrive
    if ZIP_MAGIC.startswith(data[:4]) and not zip_complete(data):  # a zip, or the first bytes of one
        return "文件的结尾还没有复制过来"
    return ""


def _load(root: Path) -> dict[str, dict[str, object]]:
    try:
        record = json.loads((root / ARRIVING).read_text("utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: the clock starts again (later refusal, never a wrong one)
    return record if isinstance(record, dict) else {}


def _save(root: Path, record: dict[str, dict[str, object]]) -> None:
    write_atomically(root / ARRIVING, json.dumps(record, indent=1, sort_keys=True).encode("ascii"))


def incomplete_since(root: Path, path: Path, digest: str, at: float, remember: bool = True) -> float:
    """When lixiao first saw ``path`` incomplete with this very content (``at`` the first time, and whenever the
    content changed: the copy is moving on). Never the file's mtime, which a copy carries over from the source."""
    key = os.fsdecode(path)
    record = _load(root)
    entry = record.get(key)
    since = entry.get("since") if isinstance(entry, dict) else None
    if isinstance(entry, dict) and entry.get("hash") == digest and isinstance(since, int | float) and since <= at:
        return float(since)
    if remember:
        record = {k: v for k, v in record.items() if _worth_keeping(k, v, at)}
        record[key] = {"hash": digest, "since": at}
        _save(root, record)
    return at


def _worth_keeping(key: str, entry: object, at: float) -> bool:
    since = entry.get("since") if isinstance(entry, dict) else None
    return isinstance(since, int | float) and at - since < FORGET_AFTER and os.path.lexists(key)


def forget(root: Path, path: Path) -> None:
    """``path`` has arrived whole, or was decided: its record goes (the file is written only when it had one)."""
    record = _load(root)
    if record.pop(os.fsdecode(path), None) is not None:
        _save(root, record)


def arrival(folder: DataFolder, item: Incoming, settings: SyncSettings,
            dry_run: bool) -> FileOutcome | Verdict | None:
    """None when an inbox or share file has arrived whole (and for every other return); a deferral while it is
    incomplete; once it has stayed incomplete and unchanged for ``incomplete_after_minutes``, the verdict to
    refuse it with. Called before the ledger is looked at: a half-copied file's hash (an empty file's, say) may
    be one decided before, and must not make the copy look like a duplicate."""
    if item.path is None or item.origin.channel not in WATCHED:
        return None
    missing = missing_part(item.data)
    if not missing:
        if not dry_run:
            forget(folder.root, item.path)
        return None
    at = now()
    since = incomplete_since(folder.root, item.path, item.hash, at, remember=not dry_run)
    limit = settings.incomplete_after_minutes
    if at - since < limit * 60:
        return FileOutcome(item.name, Outcome.DEFERRED, reasons=[
            f"文件还没有复制完整（{missing}）：先不处理，也不移动，完整后自动收取；如果 {limit:g} 分钟内一直没有"
            "变化，将退回并说明原因"], hash=item.hash)
    if not dry_run:
        forget(folder.root, item.path)
    waited = f"从 {datetime.fromtimestamp(since):%m-%d %H:%M} 起等了 {(at - since) / 60:.0f} 分钟，" if limit else ""
    return Verdict("empty" if not item.data else "truncated",
                   f"文件不完整（{missing}）：{waited}它一直没有复制完，也没有再变化，所以没有处理。请把原文件重新"
                   "复制一次；如果原文件本身也打不开，请在 Excel 或 WPS 中重新保存后再交回")
