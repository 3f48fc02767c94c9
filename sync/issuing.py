"""``lixiao issue``: plan each office's workbooks, sign them, write them to outbox/ and register them."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import secrets
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.clearance.issuance import BATCH_SHEETS, Baseline, IssueError, WorkbookPlan, issuable, plan_workbooks
from lixiao.core.storage.chain import now
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.signing import TOKEN_VERSION, canonical, row_secret, sign
from lixiao.core.storage.store import StatusRow, WorkbookRow
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
    return [plan for plans in plan_each(folder, checkpoints, split) for plan in plans]


@dataclass(frozen=True)
class CheckpointPlans:
    """The plans of several checkpoints, planned one checkpoint at a time as they are iterated."""

    folder: DataFolder
    codes: list[str]
    split: str | None

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self) -> Iterator[list[WorkbookPlan]]:
        return _plans(self.folder, self.codes, self.split)


def plan_each(folder: DataFolder, checkpoints: list[str], split: str | None) -> CheckpointPlans:
    """``plan_all`` one checkpoint at a time: the plans of one are let go before the next is planned (a
    30,000-student cohort's 26 plans held at once weigh ≈ 100 MB). The checkpoints are checked at once, the
    roster before the first is planned."""
    flow = folder.flow
    codes = list(dict.fromkeys(checkpoints)) or [cp.code for cp in issuable(flow, folder.year)]
    unknown = [c for c in codes if c not in {cp.code for cp in flow.checkpoints}]
    if unknown:
        known = "、".join(cp.code for cp in flow.checkpoints)
        raise IssueError(f"没有离校点 {'、'.join(unknown)}；可用：{known}")
    return CheckpointPlans(folder, codes, split)


def _plans(folder: DataFolder, codes: list[str], split: str | None) -> Iterator[list[WorkbookPlan]]:
    flow = folder.flow
    students = folder.store.students()
    if not students:
        raise IssueError("还没有学生：请先导入学生名单（lixiao students import 学生名单.xlsx）再签发工作簿")
    stored: dict[str, dict[str, StatusRow]] = folder.store.all_status_rows()
    waived: dict[str, dict[str, str]] = {}
    for w in folder.store.active_waivers():
        waived.setdefault(w.student_no, {})[w.step] = w.reason
    for code in codes:
        checkpoint = flow.checkpoint(code)
        initial = folder.store.first_statuses(checkpoint.lifts) if checkpoint.kind == "waiver" else None
        yield plan_workbooks(flow, folder.year, folder.session_name, checkpoint, students, stored, waived, split,
                             initial)


def issue_workbooks(
    folder: DataFolder,
    plans: list[WorkbookPlan] | CheckpointPlans,
    progress: Callable[[int, int, str], None] | None = None,
    workers: int | None = None,
) -> list[Issued]:
    """Write and register planned workbooks (a list, or ``plan_each``'s checkpoint after checkpoint); each is
    registered and written in one transaction.

    Workbooks are independent, so their bytes are built on every core: a process pool forked before the first
    checkpoint is planned, so that its workers carry none of the plans (each gets its own, pickled). The store is
    written by this process only, in plan order. ``progress`` counts workbooks for a list, checkpoints else.
    """
    folder.store.refuse_if_damaged("不签发新的工作簿")  # nothing is published from a store whose check failed
    key = secret_key(folder.root)
    workers = workers or min(os.cpu_count() or 1, 4)
    listed = isinstance(plans, list)
    groups: Iterator[list[WorkbookPlan]] = iter([plans]) if isinstance(plans, list) else iter(plans)
    total = len(plans)
    pool = None
    rows = (folder.store.student_count() * len(plans) if not isinstance(plans, list)
            else sum(len(p.rows) + len(p.waiver_rows) for p in plans))
    if workers > 1 and rows > 2000 and (len(plans) > 1 or not listed):
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))
        for started in [pool.submit(os.getpid) for _ in range(workers)]:  # fork them now, while this is small
            started.result()
    issued: list[Issued] = []
    waiting: deque[tuple[int, _Prepared, Future[bytes] | None]] = deque()

    def register_oldest() -> None:
        index, item, future = waiting.popleft()
        if progress:
            progress(len(issued) if listed else index, total, f"{item.plan.title} {item.plan.scope}")
        data = future.result() if future else build_workbook(item.plan, item.token, item.issued_at)
        issued.append(_register(folder, item, data))

    try:
        for index, group in enumerate(groups):
            for plan in group:
                item = _prepare(folder, plan, key)
                waiting.append((index, item, pool.submit(build_workbook, plan, item.token, item.issued_at)
                                if pool else None))
            del group
            # planned ahead only while a worker would otherwise wait: the finished are registered and let go
            while waiting and (_done(waiting[0][2]) or sum(not _done(w[2]) for w in waiting) > workers):
                register_oldest()
        while waiting:
            register_oldest()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if progress:
        progress(total, total, "完成")
    return issued


def _die_with_parent(parent: int) -> None:
    """A pool worker ends with the ``lixiao issue`` that forked it, killed with -9 too (Linux PR_SET_PDEATHSIG):
    an orphaned worker would hold the data folder's writer lock until someone found it."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def _done(future: Future[bytes] | None) -> bool:
    return future is None or future.done()


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
