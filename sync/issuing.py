"""``lixiao issue``: plan each office's workbooks, sign them, write them to outbox/ and register them."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.issuance import BATCH_SHEETS, IssueError, WorkbookPlan, issuable, plan_workbooks
from lixiao.core.signing import TOKEN_VERSION, canonical, digest, sign
from lixiao.core.store import StatusRow, now
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
    return _UNSAFE.sub("_", "-".join(parts) + f"-第{generation}版") + ".xlsx"


def plan_all(folder: DataFolder, checkpoints: list[str], split: str | None) -> list[WorkbookPlan]:
    """Plans of every requested checkpoint (default: all that staff tick, and the special desk)."""
    flow = folder.flow
    codes = checkpoints or [cp.code for cp in issuable(flow, folder.year)]
    unknown = [c for c in codes if c not in {cp.code for cp in flow.checkpoints}]
    if unknown:
        known = "、".join(cp.code for cp in flow.checkpoints)
        raise IssueError(f"没有离校点 {'、'.join(unknown)}；可用：{known}")
    students = folder.store.students()
    stored: dict[str, dict[str, StatusRow]] = folder.store.all_status_rows()
    waived: dict[str, dict[str, str]] = {}
    for w in folder.store.active_waivers():
        waived.setdefault(w["student_no"], {})[w["step"]] = w["reason"]
    plans: list[WorkbookPlan] = []
    for code in codes:
        plans += plan_workbooks(flow, folder.year, folder.session_name, flow.checkpoint(code), students, stored,
                                waived, split)
    return plans


def issue_workbooks(
    folder: DataFolder,
    plans: list[WorkbookPlan],
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Issued]:
    """Write and register planned workbooks; each is registered and written in one transaction."""
    key = secret_key(folder.root)
    issued = []
    for index, plan in enumerate(plans):
        if progress:
            progress(index, len(plans), f"{plan.title} {plan.scope}")
        issued.append(_issue_one(folder, plan, key))
    if progress:
        progress(len(plans), len(plans), "完成")
    return issued


def _issue_one(folder: DataFolder, plan: WorkbookPlan, key: bytes) -> Issued:
    store = folder.store
    workbook_id = secrets.token_hex(8)
    issued_at = now()
    baseline = plan.baseline()
    with store.transaction():
        generation = store.next_generation(plan.checkpoint.code, plan.scope)
        steps = ({s.name: s.code for s in plan.steps} if plan.kind == "office"
                 else {folder.flow.steps[c].name: c for c in plan.checkpoint.lifts})
        payload = {
            "v": TOKEN_VERSION, "kind": plan.kind, "workbook_id": workbook_id, "session": plan.session,
            "checkpoint": plan.checkpoint.code, "title": plan.title, "scope": plan.scope, "generation": generation,
            "issued_at": issued_at, "students_hash": plan.students_hash(), "baseline_hash": digest(baseline),
            "steps": steps, "batch_sheets": {BATCH_SHEETS[mode]: mode for mode in plan.groups},
        }
        payload_text = canonical(payload)
        token = Token(workbook_id, generation, payload_text, sign(payload_text, key))
        data = build_workbook(plan, token, issued_at)
        target_dir = folder.root / "outbox" / plan.checkpoint.code
        target_dir.mkdir(parents=True, exist_ok=True)
        path = target_dir / file_name(plan.session, plan.title, plan.scope, generation)
        store.record_workbook({
            "id": workbook_id, "checkpoint": plan.checkpoint.code, "scope": plan.scope, "generation": generation,
            "issued_at": issued_at, "students_hash": payload["students_hash"], "baseline": canonical(baseline),
            "path": str(path.relative_to(folder.root)),
        })
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
    count = len(plan.student_nos())
    return Issued(path, plan.checkpoint.code, plan.title, plan.scope, generation, count, workbook_id)
