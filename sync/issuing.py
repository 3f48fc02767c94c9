"""``lixiao issue``: plan each office's workbooks, sign them, write them to outbox/ and register them."""

from __future__ import annotations

import multiprocessing
import os
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.chain import now
from lixiao.core.files import write_atomically
from lixiao.core.issuance import BATCH_SHEETS, Baseline, IssueError, WorkbookPlan, issuable, plan_workbooks
from lixiao.core.signing import TOKEN_VERSION, canonical, row_secret, sign
from lixiao.core.store import StatusRow, WorkbookRow
from lixiao.workbooks.writer import Token, build_workbook

from .datafolder import DataFolder, secret_key

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


@dataclass(frozen=True, slots=True)
class Issued:
    """One written workbook, for the table the command prints."""

    path: Path
    checkpoint: str
    title: str
    scope: str
    generation: int
    students: int
    workbook_id: str


def file_name(session: str, title: str, scope: str, generation: int) -> str:
    """A Chinese, filesystem-safe file name: 2026届…-水电通信中心离校点-全部-第1版.xlsx."""
    parts = [session, title] if scope in title else [session, title, scope]
    stem = _UNSAFE.sub("_", "-".join(parts)).lstrip(".") or "工作簿"
    while len(stem.encode("utf-8")) > 180:  # the name, "-第N版.xlsx" and a temp prefix fit in 255 bytes
        stem = stem[:-1]
    return f"{stem}-第{generation}版.xlsx"


def plan_all(folder: DataFolder, checkpoints: list[str], split: str | None) -> list[WorkbookPlan]:
    """Plans of every requested checkpoint (default: all that staff tick, and the special desk)."""
    flow = folder.flow
    codes = checkpoints or [cp.code for cp in issuable(flow, folder.year)]
    unknown = [c for c in codes if c not in {cp.code for cp in flow.checkpoints}]
    if unknown:
        known = "、".join(cp.code for cp in flow.checkpoints)
        raise IssueError(f"没有离校点 {'、'.join(unknown)}；可用：{known}")
    students = folder.store.students()
    if not students:
        raise IssueError("还没有学生：请先导入学生名单（lixiao students import 学生名单.xlsx）再签发工作簿")
    stored: dict[str, dict[str, StatusRow]] = folder.store.all_status_rows()
    waived: dict[str, dict[str, str]] = {}
    for w in folder.store.active_waivers():
        waived.setdefault(w.student_no, {})[w.step] = w.reason
    plans: list[WorkbookPlan] = []
    for code in codes:
        plans += plan_workbooks(flow, folder.year, folder.session_name, flow.checkpoint(code), students, stored,
                                waived, split)
    return plans


def issue_workbooks(
    folder: DataFolder,
    plans: list[WorkbookPlan],
    progress: Callable[[int, int, str], None] | None = None,
    workers: int | None = None,
) -> list[Issued]:
    """Write and register planned workbooks; each is registered and written in one transaction.

    Workbooks are independent, so their bytes are built on every core (a process pool); the store
    is written by this process only, in plan order.
    """
    key = secret_key(folder.root)
    prepared = [_prepare(folder, plan, key) for plan in plans]
    rows = sum(len(p.plan.rows) + len(p.plan.waiver_rows) for p in prepared)
    workers = workers or min(os.cpu_count() or 1, 4)
    issued = []
    if workers > 1 and len(prepared) > 1 and rows > 2000:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(build_workbook, p.plan, p.token, p.issued_at) for p in prepared]
            for index, (item, future) in enumerate(zip(prepared, futures, strict=True)):
                if progress:
                    progress(index, len(prepared), f"{item.plan.title} {item.plan.scope}")
                issued.append(_register(folder, item, future.result()))
    else:
        for index, item in enumerate(prepared):
            if progress:
                progress(index, len(prepared), f"{item.plan.title} {item.plan.scope}")
            issued.append(_register(folder, item, build_workbook(item.plan, item.token, item.issued_at)))
    if progress:
        progress(len(prepared), len(prepared), "完成")
    return issued


@dataclass(frozen=True, slots=True)
class _Prepared:
    plan: WorkbookPlan
    token: Token
    issued_at: str
    baseline: Baseline


def _prepare(folder: DataFolder, plan: WorkbookPlan, key: bytes) -> _Prepared:
    """Generation, payload and signed token of one workbook (nothing written yet)."""
    workbook_id = secrets.token_hex(8)
    issued_at = now()
    baseline = plan.baseline()
    generation = folder.store.next_generation(plan.checkpoint.code, plan.scope)
    steps = ({s.name: s.code for s in plan.steps} if plan.kind == "office"
             else {folder.flow.steps[c].name: c for c in plan.checkpoint.lifts})
    payload = {
        "v": TOKEN_VERSION, "kind": plan.kind, "workbook_id": workbook_id, "session": plan.session,
        "checkpoint": plan.checkpoint.code, "title": plan.title, "scope": plan.scope, "generation": generation,
        "issued_at": issued_at, "students_hash": plan.students_hash(), "baseline_hash": baseline.digest(),
        "steps": steps, "batch_sheets": {BATCH_SHEETS[mode]: mode for mode in plan.groups},
        "row_keys": 1,  # every ticking sheet ends with a 行校验 column (signing.row_key)
    }
    payload_text = canonical(payload)
    token = Token(workbook_id, generation, payload_text, sign(payload_text, key), row_secret(key, workbook_id))
    return _Prepared(plan, token, issued_at, baseline)


def _register(folder: DataFolder, item: _Prepared, data: bytes) -> Issued:
    """Record the workbook and write its file in one transaction."""
    plan, token = item.plan, item.token
    store = folder.store
    with store.transaction():
        if store.next_generation(plan.checkpoint.code, plan.scope) != token.generation:
            raise IssueError("另一个 lixiao issue 正在签发同一离校点的工作簿，请稍后重试")
        target_dir = folder.root / "outbox" / plan.checkpoint.code
        target_dir.mkdir(parents=True, exist_ok=True)
        path = target_dir / file_name(plan.session, plan.title, plan.scope, token.generation)
        store.record_workbook(WorkbookRow(
            token.workbook_id, plan.checkpoint.code, plan.scope, token.generation, item.issued_at,
            plan.students_hash(), canonical(item.baseline.as_json()), str(path.relative_to(folder.root)),
            plan.office, plan.readiness_digest()))
        write_atomically(path, data)
    count = len(plan.student_nos())
    return Issued(path, plan.checkpoint.code, plan.title, plan.scope, token.generation, count, token.workbook_id)
