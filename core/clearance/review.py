"""The 待核对 queue: conflicts, refused ticks and refused files that still need the coordinator, and their
resolution (keep the store, take the returned value, dismiss, acknowledge), each an audit event.

An item leaves the queue when it is resolved — or by itself when the store already says what it asked for: a
conflict whose cell now holds the returned value, a refused tick whose step has since been passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from lixiao.core.manual.marks import label_status
from lixiao.core.manual.model import Status
from lixiao.core.storage.chain import Event, now

from .clearance import Clearance, ClearanceError, RefusedError

LIFT = "解除限制"  # the value of a refused tick of the 解除限制 sheet that asked to lift a restriction (merge.py)


class Action(StrEnum):
    """What the coordinator decides for an item."""

    KEEP = "keep"  # a conflict: the store stays as it is
    TAKE = "take"  # a conflict or refused tick: apply the returned value now (checked like lixiao set)
    DISMISS = "dismiss"  # a refused tick or a refused file: seen, nothing to do

    @property
    def label(self) -> str:
        """The action in Chinese."""
        return {"keep": "保留数据库的值", "take": "采用交回的值", "dismiss": "已核对，不处理"}[self.value]


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One open item: its id (C12 conflict, T34 refused tick, F12 refused file), what it is about."""

    id: str
    kind: str  # conflict | refused | file (refused whole) | held (waiting for a confirmation) | sender (flagged)
    student_no: str
    name: str
    step: str
    step_name: str
    summary: str
    file_name: str
    created_at: str
    file_hash: str = ""  # a refused file's content hash (its id before short ids: F + the first 12 hex digits)

    @property
    def kind_label(self) -> str:
        """The kind in Chinese."""
        return {"conflict": "冲突", "refused": "被拒绝的勾选", "file": "被拒绝的文件", "held": "待确认的文件",
                "sender": "待核对发件人的文件"}[self.kind]


def open_items(clearance: Clearance, limit: int = 1000) -> list[ReviewItem]:
    """Every open item, conflicts first, newest first within a kind."""
    store = clearance.store
    names = {s.code: s.name for s in clearance.flow.all_steps()}
    conflicts, refusals = store.open_conflicts(limit), store.open_refusals(limit)
    # only the students these items name (a report must not read every status row for a handful of items)
    named = {c.student_no for c in conflicts} | {r.student_no for r in refusals}
    statuses = {no: clearance.statuses(no) for no in named}
    lifted = {r.student_no: clearance.waived(r.student_no) for r in refusals if r.value == LIFT}
    items: list[ReviewItem] = []
    for c in conflicts:
        if statuses.get(c.student_no, {}).get(c.step, Status.PENDING) is label_status(c.returned):
            continue  # settled meanwhile (lixiao set, a later return): nothing left to decide
        items.append(ReviewItem(f"C{c.id}", "conflict", c.student_no, "", c.step, names.get(c.step, c.step),
                                f"签发时 {c.baseline}，交回 {c.returned}，数据库当时 {c.current}", c.file_name,
                                c.created_at))
    for r in refusals:
        if r.value == LIFT and r.step in lifted.get(r.student_no, set()):
            continue  # the restriction has been lifted since (lixiao waive, a later return): moot
        if r.value != LIFT and statuses.get(r.student_no, {}).get(r.step) is (label_status(r.value) or Status.PASSED):
            continue  # the step has since the state the refused cell asked for (passed, 未通过…): moot
        items.append(ReviewItem(f"T{r.id}", "refused", r.student_no, "", r.step, names.get(r.step, r.step),
                                f"{r.value}：{r.reason}", r.file_name, r.created_at))
    rejections = store.open_rejections(limit)
    numbers = store.return_numbers({f.hash for f in rejections})
    for f in rejections:
        kind, letter = _FILE_KINDS.get(f.outcome, ("file", "F"))
        details = f.details
        items.append(ReviewItem(f"{letter}{numbers[f.hash]}", kind, "", "", "", "",
                                (details.flagged if kind == "sender" else details.message) or f.detail,
                                f.file_name, f.updated_at, f.hash))
    people = store.student_names({i.student_no for i in items if i.student_no})
    return [ReviewItem(i.id, i.kind, i.student_no, people.get(i.student_no, ""), i.step, i.step_name, i.summary,
                       i.file_name, i.created_at, i.file_hash) for i in items]


_FILE_KINDS = {"held": ("held", "H"), "merged": ("sender", "S")}  # by ledger outcome; the others are refused files


def _find(items: list[ReviewItem], item_id: str) -> ReviewItem | None:
    """The item an id names; a refused file also by its former id (F + 12 hex digits of its hash)."""
    wanted = item_id.strip().lower()
    found = next((i for i in items if i.id.lower() == wanted), None)
    if found is None and len(wanted) == 13 and wanted.startswith("f"):
        found = next((i for i in items if i.kind == "file" and i.file_hash.startswith(wanted[1:])), None)
    return found


def resolve(clearance: Clearance, item_id: str, action: Action, reason: str, operator: str,
            confirm_held: Callable[[ReviewItem], str] | None = None) -> str:
    """Resolve one open item; a Chinese line saying what was done. ClearanceError for an unknown item or an
    action that does not fit it; RefusedError when taking the value is refused by the rules (nothing written).
    ``confirm_held``: how ``take`` merges a held return (the take-back pipeline, which core does not import);
    it runs before the item is marked resolved and raises when the return is not merged."""
    reason = reason.strip()
    if not reason:
        raise ClearanceError("请用 --reason 写明处理理由（记入审计）")
    item = _find(open_items(clearance, limit=100_000), item_id)
    if item is None:
        raise ClearanceError(f"没有待核对项 {item_id}（lixiao review 列出待核对项；已处理或已自动解决的不再列出）")
    allowed = {"conflict": (Action.KEEP, Action.TAKE), "refused": (Action.TAKE, Action.DISMISS),
               "file": (Action.DISMISS,), "held": (Action.TAKE, Action.DISMISS), "sender": (Action.DISMISS,)}[item.kind]
    if action not in allowed:
        raise ClearanceError(f"{item.kind_label} {item.id} 只能 {' 或 '.join(a.value for a in allowed)}")
    store = clearance.store
    merged = ""
    if item.kind == "held" and action is Action.TAKE:
        if confirm_held is None:
            raise ClearanceError(f"{item.kind_label} {item.id} 要在命令行用 lixiao review resolve {item.id} take 确认")
        merged = "，" + confirm_held(item)
    with store.transaction():
        if action is Action.TAKE and item.kind == "refused" and store.refusal_value(int(item.id[1:])) == LIFT:
            _lift(clearance, item, reason, operator)
        elif action is Action.TAKE and item.kind != "held":
            student = clearance.student(item.student_no)
            asked, remark = ((store.refusal_value(int(item.id[1:])), "") if item.kind == "refused"
                             else store.conflict_returned(int(item.id[1:])))
            status = label_status(asked)
            if status is None or not item.step:  # an unreadable mark (✕, x) or a whole row out of line
                raise ClearanceError(f"{item.kind_label} {item.id} 交回的内容“{asked[:40]}”不是一个明确的状态，"
                                     f"不能直接采用；请用 lixiao set {item.student_no or '学号'} "
                                     f"{item.step or '步骤'} 状态 设定正确的状态，再 dismiss 本项")
            decision = clearance.set_step(student, item.step, status, remark=remark, source=f"review:{item.id}",
                                          operator=operator)
            if not decision.allowed:
                raise RefusedError(decision.reason)
        store.mark_resolved(item.kind, item.file_hash or item.id[1:], action.value, operator, reason)
        store.append_audit([Event("review", student_no=item.student_no, step=item.step, old=item.id,
                                  new=action.value, decision="resolved", source="review", operator=operator,
                                  detail=reason, at=now())])
    return f"{item.kind_label} {item.id}（{item.name or item.file_name} {item.step_name}）：{action.label}{merged}"


def _lift(clearance: Clearance, item: ReviewItem, reason: str, operator: str) -> None:
    """``take`` on a refused 解除限制 tick: lift the restriction, checked like ``lixiao waive``, the resolution's
    reason as the waiver's 理由."""
    student, step = clearance.student(item.student_no), clearance.step(item.step)
    try:
        clearance.waive(student, step, reason, operator)
    except RefusedError as exc:
        raise RefusedError(f"{exc}；本项保持待核对（可 dismiss）") from None
