"""Returns through the shared folders: every office's 交回/ polled (network shares lose events), each settled
file through the pipeline, then moved to 交回/已处理/ with its receipt (or a .说明.txt) in 交回/回执/."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.ledger import Channel, Origin
from lixiao.sync.datafolder import DataFolder
from lixiao.sync.messages import OUTCOME_LABELS, strip_code
from lixiao.sync.takeback.inbox import is_debris, safe_name, unique_path, wait_until_settled
from lixiao.sync.takeback.outcomes import FileOutcome, Outcome
from lixiao.sync.takeback.receipts import receipt_path

from .delivery import DONE, RECEIPTS, RETURN, Route, routes

log = logging.getLogger("lixiao.watch")


SHARE_DEPTH = 2  # subfolders of 交回/ looked into (an unzipped archive), 已处理/ and 回执/ excepted


def share_problem(route: Route) -> str:
    """Why an office's 交回/ cannot be taken from safely ('' when it can): missing, not a real folder, or its
    已处理/ or 回执/ not real folders (a link there would make lixiao write wherever it points)."""
    if route.share is None:
        return ""
    base = route.share / RETURN
    title = route.instance.title
    try:
        info = os.lstat(base)
    except FileNotFoundError:
        return f"{title}的共享文件夹里没有“{RETURN}”文件夹（{base}）：交回的文件无处可放；运行 lixiao send 会重新建立"
    except OSError as exc:
        return f"无法读取{title}的“{RETURN}”文件夹（{base}）：{exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        kind = "一个链接" if stat.S_ISLNK(info.st_mode) else "一个文件"
        return f"{title}的“{RETURN}”（{base}）是{kind}，不是文件夹：暂不收取，请改回普通文件夹"
    for sub in (DONE, RECEIPTS):
        try:
            sub_info = os.lstat(base / sub)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"无法读取 {base / sub}：{exc.strerror or exc}"
        if not stat.S_ISDIR(sub_info.st_mode):
            kind = "一个链接" if stat.S_ISLNK(sub_info.st_mode) else "一个文件"
            return (f"{title}的“{RETURN}/{sub}”（{base / sub}）是{kind}，不是文件夹：为安全起见暂不收取该离校点"
                    f"交回的文件；请删除它（系统会重建文件夹）")
    return ""


def share_candidates(route: Route, min_age: float) -> list[Path]:
    """Settled entries in an office's 交回/ and its subfolders (two levels; not 已处理/ or 回执/; links to folders not
    followed), oldest first. Links, FIFOs and other odd entries are listed too: the pipeline refuses them."""
    if route.share is None:
        return []
    found: list[tuple[float, Path]] = []
    _scan_share(route.share / RETURN, SHARE_DEPTH, min_age, found, top=True)
    return [p for _, p in sorted(found)]


def _scan_share(directory: Path, depth: int, min_age: float, found: list[tuple[float, Path]], top: bool) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if top and entry.name in (DONE, RECEIPTS):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        path = Path(entry.path)
        if stat.S_ISDIR(info.st_mode):
            if depth > 0 and not entry.name.startswith("."):
                _scan_share(path, depth - 1, min_age, found, top=False)
            continue
        if is_debris(path):
            continue
        if time.time() - info.st_mtime < min_age:
            continue  # still being copied onto the share (network shares lose events: this is polled)
        found.append((info.st_mtime, path))


def take_share_returns(folder: DataFolder, key: bytes, min_age: float = 2.0,
                       on_outcome: Callable[[FileOutcome], None] | None = None, *, settle_wait: float = 0.0,
                       problems: list[str] | None = None,
                       last_seen: dict[Path, tuple[int, int]] | None = None) -> list[FileOutcome]:
    """Every settled return in every office's 交回/, through the pipeline; decided files move to 交回/已处理/ and
    their receipt (or explanation) is written to 交回/回执/. ``settle_wait``: wait up to that long for files
    copied a moment ago (one-shot sync) instead of leaving them for next time. ``last_seen`` (the daemon's polls):
    a file is taken only when its size and mtime are what the previous poll saw (the mtime of a copy is the
    source's, so its age says nothing); the pipeline then takes it only once it is a whole zip. An office whose
    交回/ is not safe to use is skipped and said in ``problems``. The caller holds the writer lock."""
    from lixiao.sync.takeback.pipeline import process_file

    outcomes = []
    seen_now: dict[Path, tuple[int, int]] = {}
    for route in routes(folder):
        if route.share is None:
            continue
        problem = share_problem(route)
        if problem:
            if problems is not None and (route.share / RETURN).parent.exists():
                problems.append(problem)
            continue
        if settle_wait > 0:
            wait_until_settled(share_candidates(route, 0.0), min_age, settle_wait)
        for path in share_candidates(route, min_age):
            if last_seen is not None and not _unchanged(path, last_seen, seen_now):
                continue  # first seen like this: looked at again on the next poll
            origin = Origin(Channel.SHARE, office=route.key, sender=route.entry.contact or route.instance.title,
                            sender_known=True)
            outcome = process_file(folder, path, key, min_age=0, origin=origin)
            if outcome.outcome is not Outcome.DEFERRED:
                _file_away(folder, route, path, outcome)
                seen_now.pop(path, None)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    if last_seen is not None:
        last_seen.clear()
        last_seen.update(seen_now)
    return outcomes


def _unchanged(path: Path, last_seen: dict[Path, tuple[int, int]], seen_now: dict[Path, tuple[int, int]]) -> bool:
    """True when ``path`` has the size and mtime the previous poll saw; remembers them for the next poll."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    seen_now[path] = (info.st_size, info.st_mtime_ns)
    return last_seen.get(path) == seen_now[path]


def _file_away(folder: DataFolder, route: Route, path: Path, outcome: FileOutcome) -> None:
    """A decided share return: the file to 已处理/ (a link or other odd entry is removed instead), its receipt or
    explanation to 回执/ (best effort: the return is already safely recorded; the share may be read-only or
    full). 已处理/ and 回执/ were checked to be real folders (share_problem)."""
    assert route.share is not None
    base = route.share / RETURN
    try:
        (base / DONE).mkdir(exist_ok=True)
        (base / RECEIPTS).mkdir(exist_ok=True)
        problem = share_problem(route)  # 已处理/ or 回执/ swapped for a link since the poll began
        if problem:
            raise OSError(problem)
        info = os.lstat(path) if os.path.lexists(path) else None
        if info is not None and not stat.S_ISREG(info.st_mode):
            path.unlink()  # a link, FIFO or device: refused, never kept or followed
        elif info is not None:
            path.replace(unique_path(base / DONE / path.name))  # the office's own name, to find it again
        stem = Path(safe_name(path.name)).stem
        receipt = receipt_path(folder, outcome) if outcome.outcome in (Outcome.MERGED, Outcome.HELD) else None
        if receipt is not None:
            shutil.copyfile(receipt, unique_path(base / RECEIPTS / f"{stem}-回执.xlsx"))
        else:
            text = (f"文件：{outcome.file}\n结果：{OUTCOME_LABELS[outcome.outcome]}\n"
                    + "".join(f"原因：{strip_code(r)}\n" for r in outcome.reasons[:10])
                    + ("" if outcome.outcome is Outcome.DUPLICATE else
                       "处理办法：请按原因修改后重新放入“交回”文件夹；如有疑问请联系离校工作协调人。\n"))
            write_atomically(unique_path(base / RECEIPTS / f"{stem}.说明.txt"), text.encode("utf-8"))
    except OSError as exc:
        log.error("%s：结果已记录，但无法整理共享文件夹 %s（%s）", outcome.file, base, exc.strerror or exc)
