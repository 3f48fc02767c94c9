"""The coordinator's data folder: creating it, finding it (like git), and opening its store and flow."""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lixiao.core.clearance import Clearance
from lixiao.core.flow import PRESETS, load_flow_file, preset_text
from lixiao.core.model import Flow
from lixiao.core.store import Store

SETTINGS = "lixiao.toml"
FOLDERS = ("outbox", "inbox", "archive", "rejected", "receipts", "reports")
ENV_VAR = "LIXIAO_DATA"


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
    """Create a data folder (private: 0700, .secret 0600) with its flow, settings and store."""
    if (root / SETTINGS).exists():
        raise DataFolderError(f"{root} 已经是 lixiao 数据文件夹（有 {SETTINGS}），不会覆盖")
    if flow in PRESETS:
        flow_text, flow_name = preset_text(flow), flow
    else:
        path = Path(flow)
        if not path.is_file():
            raise DataFolderError(f"--flow 应为 {'、'.join(PRESETS)} 或一个 .toml 流程文件，找不到 {flow}")
        load_flow_file(path)  # validate before creating anything
        flow_text, flow_name = path.read_text("utf-8"), path.stem
    year = year or (year_of(session) if session else None) or date.today().year
    session = session or default_session_name(flow_name, year)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    for name in FOLDERS:
        (root / name).mkdir(exist_ok=True)
    secret = root / ".secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    (root / "flow.toml").write_text(flow_text, "utf-8")
    settings = (
        "# lixiao 数据文件夹设置\n"
        "[session]\n"
        f"name = {_toml_string(session)}\n"
        f"year = {year}\n\n"
        "[flow]\n"
        "# 流程文件（可编辑）；相对于本文件夹\n"
        'file = "flow.toml"\n'
    )
    (root / SETTINGS).write_text(settings, "utf-8")
    store = Store.create(root / "store.db", session, year, flow_name)
    store.close()
    return open_folder(root)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    store = Store.open(root / "store.db", guard=write)
    session = store.session()
    return DataFolder(root=root.resolve(), session_name=session.name, year=session.year, flow=flow, store=store)


def secret_key(root: Path) -> bytes:
    """The folder's signing key (never written into a workbook)."""
    try:
        return bytes.fromhex((root / ".secret").read_text().strip())
    except (OSError, ValueError):
        raise DataFolderError(f"{root / '.secret'} 缺失或损坏；没有它无法签发和核验工作簿") from None

