"""The coordinator's data folder: creating it, finding it (like git), and opening its store and flow."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import tomllib
import unicodedata
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from lixiao.core.manual.flow import PRESETS, load_flow_file, preset_text
from lixiao.core.manual.model import Flow
from lixiao.core.storage.chain import ANCHOR
from lixiao.core.storage.faults import fault_point
from lixiao.core.storage.guard import CHECK_CACHE, DAMAGED

if TYPE_CHECKING:  # the store (sqlite-utils) is imported when a folder is opened, not by `lixiao --help`
    from lixiao.core.clearance.clearance import Clearance
    from lixiao.core.storage.store import Store

SETTINGS = "lixiao.toml"
FOLDERS = ("outbox", "inbox", "archive", "rejected", "receipts", "reports")
ENV_VAR = "LIXIAO_DATA"
SETTINGS_HEADER = "# lixiao 数据文件夹设置；流程文件 flow.toml 可编辑（路径相对于本文件夹）\n"


class DataFolderError(ValueError):
    """The data folder cannot be found, created or read."""


@dataclass
class DataFolder:
    """An open data folder: its paths, settings, flow and store."""

    root: Path
    session_name: str
    year: int
    flow: Flow
    store: Store

    @property
    def clearance(self) -> Clearance:
        """The clearance rules bound to this folder's store and flow."""
        from lixiao.core.clearance.clearance import Clearance

        return Clearance(self.store, self.flow)

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def default_session_name(flow_name: str, year: int) -> str:
    """A session name like 2026届本科毕业生离校."""
    who = "研究生" if flow_name == "graduate" else "本科"
    return f"{year}届{who}毕业生离校"


def year_of(session_name: str) -> int | None:
    """The cohort year written in a session name (2026届… → 2026), if any."""
    found = re.search(r"(20\d\d)", session_name)
    return int(found.group(1)) if found else None


def init_folder(root: Path, flow: str = "undergrad", session: str | None = None, year: int | None = None) -> DataFolder:
    """Create a data folder (private: 0700, .secret 0600) with its flow, settings and store, fully or not at all.

    A folder an interrupted init left half-made (no lixiao.toml, or no store.db) is initialised again.
    """
    if (root / SETTINGS).exists() and (root / "store.db").exists():
        raise DataFolderError(f"{root} 已经是 lixiao 数据文件夹（有 {SETTINGS}），不会覆盖")
    if flow in PRESETS:
        flow_text, flow_name = preset_text(flow), flow
    else:
        path = Path(flow)
        if not path.is_file():
            raise DataFolderError(f"--flow 应为 {'、'.join(PRESETS)} 或一个 .toml 流程文件，找不到 {flow}")
        load_flow_file(path)  # validate before creating anything
        flow_text, flow_name = path.read_text("utf-8"), path.stem
    if session is not None:
        session = session.strip()
        problem = session_name_problem(session)
        if problem:
            raise DataFolderError(problem)
    year = year or (year_of(session) if session else None) or date.today().year
    session = session or default_session_name(flow_name, year)
    if root.exists() and not root.is_dir():
        raise DataFolderError(f"{root} 是一个文件，不是文件夹；请换一个名称")
    _check_leftover_store(root)
    created: list[Path] = []
    try:
        _build_folder(root, created, flow_text, flow_name, session, year)
        return open_folder(root)
    except BaseException:
        _remove_created(created)
        raise


MAX_SESSION_NAME = 40


def session_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a session name (empty, a newline, control characters), or None."""
    if not name:
        return "会话名称（--session）不能为空，例如 2026届本科毕业生离校"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "会话名称（--session）不能包含换行或控制字符；请写成一行，例如 2026届本科毕业生离校"
    if len(name) > MAX_SESSION_NAME:
        return (f"会话名称（--session）最长 {MAX_SESSION_NAME} 个字（现为 {len(name)} 个）：它会出现在每个工作簿的"
                "文件名和标题里；例如 2026届本科毕业生离校")
    return None


def _check_leftover_store(root: Path) -> None:
    """A store.db left without lixiao.toml may be replaced only when it holds nothing but its creation."""
    db = root / "store.db"
    if not db.exists():
        return
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            students = conn.execute("SELECT count(*) FROM students").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    except sqlite3.Error:
        students, events = 0, 0  # unreadable: an interrupted create, not data
    if students or events > 1:
        raise DataFolderError(f"{db} 已有数据，但缺少 {SETTINGS}；请从备份恢复 {SETTINGS}，"
                              f"或把 store.db 移到别处后再运行 lixiao init")


def _build_folder(root: Path, created: list[Path], flow_text: str, flow_name: str, session: str, year: int) -> None:
    """Create every part of a data folder, recording each new path in ``created`` (to undo on failure)."""
    missing = [p for p in (root, *root.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir()
        created.append(directory)
    if root not in created:  # half-made by an interrupted init: its settings and empty store are replaced
        for leftover in (SETTINGS, *STORE_FILES):
            (root / leftover).unlink(missing_ok=True)
    root.chmod(0o700)
    for name in FOLDERS:
        if not (root / name).exists():
            (root / name).mkdir()
            created.append(root / name)
    for name in (".secret", "flow.toml"):  # a file the user already had is rewritten, never removed
        if not (root / name).exists():
            created.append(root / name)
    fd = os.open(root / ".secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    (root / "flow.toml").write_text(flow_text, "utf-8")
    created.extend(root / n for n in STORE_FILES)
    from lixiao.core.storage.store import Store

    Store.create(root / "store.db", session, year, flow_name).close()
    fault_point("init")
    # Written last: lixiao.toml is what makes a folder a data folder (find_folder looks for it).
    settings = {"session": {"name": session, "year": year}, "flow": {"file": "flow.toml"}}
    created.append(root / SETTINGS)
    (root / SETTINGS).write_text(SETTINGS_HEADER + tomli_w.dumps(settings), "utf-8")


# The store and the files kept beside it (write-ahead log, audit anchor, check cache, damage marker).
STORE_FILES = ("store.db", "store.db-wal", "store.db-shm", ANCHOR, CHECK_CACHE, DAMAGED)


def _remove_created(created: list[Path]) -> None:
    """Undo a failed init: remove what it created, newest first (a created folder with all it holds)."""
    for path in reversed(created):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # best effort; the original error is what the user needs to see


def find_folder(explicit: str | None = None, cwd: Path | None = None) -> Path:
    """The data folder from --data, $LIXIAO_DATA, or the current folder and its parents."""
    if explicit:
        root = Path(explicit)
        if not (root / SETTINGS).is_file():
            raise DataFolderError(f"{root} 不是 lixiao 数据文件夹（没有 {SETTINGS}）；请先运行 lixiao init {root}")
        return root
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env)
        if not (root / SETTINGS).is_file():
            raise DataFolderError(f"环境变量 {ENV_VAR}={env} 指向的不是 lixiao 数据文件夹")
        return root
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS).is_file():
            return folder
    raise DataFolderError("找不到 lixiao 数据文件夹：请用 --data 指定，或先运行 lixiao init 文件夹")


def open_folder(root: Path, *, write: bool = True) -> DataFolder:
    """Open a data folder's settings, flow and store. ``write`` (the default) passes the store's write guard
    first — refused when verify marked it damaged, its audit chain is behind ``audit.head`` or quick_check
    fails; read-only commands pass ``write=False`` and skip it."""
    try:
        settings = tomllib.loads((root / SETTINGS).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataFolderError(f"{root / SETTINGS} 无法读取：{exc}") from None
    flow_ref = settings.get("flow", {}).get("file", "flow.toml")
    flow_path = root / flow_ref
    flow = load_flow_file(flow_path)
    from lixiao.core.storage.store import Store

    store = Store.open(root / "store.db", guard=write)
    session = store.session()
    return DataFolder(root=root.resolve(), session_name=session.name, year=session.year, flow=flow, store=store)


def secret_key(root: Path) -> bytes:
    """The folder's signing key (never written into a workbook)."""
    try:
        return bytes.fromhex((root / ".secret").read_text().strip())
    except (OSError, ValueError):
        raise DataFolderError(f"{root / '.secret'} 缺失或损坏；没有它无法签发和核验工作簿") from None

