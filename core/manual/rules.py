"""The business rules of the manual as pure functions: applicability, prerequisites, waivers, 全部完成."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from . import loans
from .model import Checkpoint, Flow, Status, Step, Student

BLOCKED_PREFIX = "当前学生没有完成以下步骤，不能进行当前离校点的离校："
# A prerequisite is met by these statuses (na also covers disabled steps).
_MEETS = frozenset({Status.PASSED, Status.OPTIONAL, Status.NA})


class ClearanceError(ValueError):
    """A clearance command names a student or step that does not exist, or lacks an argument."""


class RefusedError(ClearanceError):
    """The rules refuse the change (e.g. waiving a passed step); nothing was written."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a change may be applied, and if not the reason shown to staff."""

    allowed: bool
    reason: str = ""
    missing: tuple[Step, ...] = ()
    unchanged: bool = False  # allowed, but the store already holds exactly this


ALLOWED = Decision(True)


def applies(step: Step, student: Student) -> bool:
    """True when ``step`` concerns ``student`` (loans, switch, withheld certificates...)."""
    rule = step.applies_to
    if rule == "all":
        return True
    if rule.startswith("!"):
        return not student.flag(rule[1:])
    return student.flag(rule)


def effective_status(step: Step, student: Student, stored: Status | None, year: int) -> Status:
    """The status a report shows: na when not applicable or disabled, else stored or pending."""
    if not step.enabled(year) or not applies(step, student):
        return Status.NA
    return stored if stored is not None and stored is not Status.NA else Status.PENDING


def prerequisite_steps(flow: Flow, checkpoint: Checkpoint) -> list[Step]:
    """The steps a checkpoint requires, in flow order (a required checkpoint means all its steps)."""
    wanted: set[str] = set()
    for req in checkpoint.requires:
        if req in flow.steps:
            wanted.add(req)
        else:
            wanted.update(s.code for s in flow.checkpoint(req).steps)
    return [s for s in flow.all_steps() if s.code in wanted]


def passed_dependents(flow: Flow, step_code: str, statuses: Mapping[str, Status]) -> list[Step]:
    """Steps already passed whose checkpoint requires ``step_code`` (taking that step back leaves them standing
    on a prerequisite that is no longer met: worth a warning, never undone silently)."""
    return [s for cp in flow.checkpoints if any(p.code == step_code for p in prerequisite_steps(flow, cp))
            for s in cp.steps if statuses.get(s.code) is Status.PASSED]


def missing_prerequisites(
    flow: Flow,
    student: Student,
    step_code: str,
    statuses: Mapping[str, Status],
    waived: Set[str],
    year: int,
) -> list[Step]:
    """Prerequisite steps of ``step_code`` not passed, optional, na or waived for this student."""
    checkpoint = flow.step_checkpoint(step_code)
    missing = []
    for pre in prerequisite_steps(flow, checkpoint):
        status = effective_status(pre, student, statuses.get(pre.code), year)
        if status not in _MEETS and pre.code not in waived:
            missing.append(pre)
    return missing


def describe_missing(flow: Flow, student: Student, missing: list[Step] | tuple[Step, ...]) -> str:
    """The manual's refusal: 当前学生没有完成以下步骤，不能进行当前离校点的离校：财务处离校点：缴还欠款."""
    return BLOCKED_PREFIX + "；".join(step_title(flow, student, s) for s in missing)


def step_title(flow: Flow, student: Student, step: Step) -> str:
    """A step named as the manual lists it for this student: 财务处离校点：缴还欠款."""
    return f"{flow.checkpoint(step.checkpoint).title_for(student.college)}：{step.name}"


def may_set(
    flow: Flow,
    student: Student,
    step_code: str,
    new: Status,
    statuses: Mapping[str, Status],
    waived: Set[str],
    year: int,
    confirmed_lenders: Set[str] = frozenset(),
) -> Decision:
    """Whether ``step_code`` of ``student`` may become ``new`` given the store's current state (and, for a national
    loan held at several lenders, which of them have confirmed: every one must before the step passes)."""
    step = flow.steps[step_code]
    if not step.enabled(year):
        return Decision(False, f"步骤“{step.name}”自 {step.disabled_from} 年起已取消，不能再办理")
    if not applies(step, student):
        return Decision(False, f"该生不需要办理“{step.name}”（不适用）")
    if new is Status.NA:
        return Decision(False, "不能把步骤直接设为“不适用”，不适用由学生名单中的标记决定")
    if new in (Status.PASSED, Status.OPTIONAL):  # 可办可不办 counts as done: it needs the prerequisites too
        missing = missing_prerequisites(flow, student, step_code, statuses, waived, year)
        if missing:
            return Decision(False, describe_missing(flow, student, missing), tuple(missing))
    if new in (Status.PASSED, Status.OPTIONAL) and step.feed == loans.NATIONAL_FEED \
            and (unconfirmed := loans.refusal(student, confirmed_lenders)):
        return Decision(False, unconfirmed)
    return ALLOWED


def restricting_checkpoints(flow: Flow, step_code: str) -> list[Checkpoint]:
    """Checkpoints for which ``step_code`` is a prerequisite (the restriction a waiver lifts)."""
    return [cp for cp in flow.checkpoints if step_code in {s.code for s in prerequisite_steps(flow, cp)}]


def liftable_steps(flow: Flow) -> list[Step]:
    """The steps whose restriction the flow's special desk may lift (its checkpoint's ``lifts``), in flow order."""
    lifted = {code for cp in flow.checkpoints if cp.kind == "waiver" for code in cp.lifts}
    return [s for s in flow.all_steps() if s.code in lifted]


WAIVER_NEEDS_REASON = "解除限制必须写明理由（如：欠费缓交，缓交证明编号）"


def waiver_reason(reason: str) -> Decision:
    """A restriction is lifted only with a reason (manual §3.9): the one rule the CLI and the workbook share."""
    return Decision(True) if reason.strip() else Decision(False, WAIVER_NEEDS_REASON)


def may_waive(
    flow: Flow, student: Student, step_code: str, status: Status, already: bool, year: int
) -> Decision:
    """Whether the special desk may lift the restriction of this student's step (manual §3.9)."""
    step = flow.steps[step_code]
    if not restricting_checkpoints(flow, step_code):
        return Decision(False, f"“{step.name}”不是任何离校点的前置条件，没有可解除的限制")
    liftable = liftable_steps(flow)
    if step_code not in {s.code for s in liftable}:
        if not liftable:
            return Decision(False, "当前流程没有特殊离校点（kind = \"waiver\"），不能解除任何限制")
        names = "、".join(f"“{s.name}”" for s in liftable)
        return Decision(False, f"特殊离校点只能解除{names}的限制；“{step.name}”须由所在离校点办理，不能解除")
    if effective_status(step, student, status, year) is Status.NA:
        return Decision(False, f"该生不需要办理“{step.name}”，没有可解除的限制")
    if status is Status.PASSED:
        return Decision(False, f"“{step.name}”已通过，无法调整离校点限制")
    if already:
        return Decision(False, f"“{step.name}”的限制已经解除（限制已关闭）")
    return ALLOWED


def checkpoint_complete(checkpoint: Checkpoint, student: Student, statuses: Mapping[str, Status], year: int) -> bool:
    """离校点当前状态 已完成 (else 未完成): every applicable, enabled step of the checkpoint passed or optional."""
    return all(effective_status(s, student, statuses.get(s.code), year) in _MEETS for s in checkpoint.steps)


def checkpoint_word(done: bool) -> str:
    """离校点当前状态 in the manual's words (§3.9): 已完成 or 未完成."""
    return "已完成" if done else "未完成"


def is_complete(flow: Flow, student: Student, statuses: Mapping[str, Status], year: int) -> bool:
    """全部完成: every applicable, enabled, required step passed (a waiver does not count as passed).

    A step marked 可办可不办 (optional) never holds a student back.
    """
    for step in flow.all_steps():
        if not step.required:
            continue
        status = effective_status(step, student, statuses.get(step.code), year)
        if status not in _MEETS:
            return False
    return True


PROGRESS_NAMED = 4  # 离校进度 names at most this many missing steps, then says how many


def progress_text(flow: Flow, student: Student, statuses: Mapping[str, Status], year: int) -> str:
    """离校进度 of the whole 离校记录 in one cell: 6/8 · 缺 清理电费、缴还欠款 (the steps 全部完成 counts, the missing
    ones named as the record lists them), or 8/8 · 全部完成."""
    effective = {s.code: effective_status(s, student, statuses.get(s.code), year) for s in flow.all_steps()}
    counted = [s for s in flow.all_steps() if s.required and effective[s.code] is not Status.NA]
    missing = [s for s in counted if effective[s.code] not in _MEETS]
    done = f"{len(counted) - len(missing)}/{len(counted)}"
    if not missing:
        return f"{done} · 全部完成"
    named = "、".join(flow.step_label(s.code) for s in missing[:PROGRESS_NAMED])
    more = f" 等 {len(missing)} 项" if len(missing) > PROGRESS_NAMED else ""
    return f"{done} · 缺 {named}{more}"


def blocked_steps(
    flow: Flow, student: Student, statuses: Mapping[str, Status], waived: Set[str], year: int
) -> list[tuple[Step, list[Step]]]:
    """Unpassed applicable steps whose prerequisites are unmet, each with what is missing."""
    result = []
    for step in flow.all_steps():
        status = effective_status(step, student, statuses.get(step.code), year)
        if status in (Status.PASSED, Status.NA):
            continue
        missing = missing_prerequisites(flow, student, step.code, statuses, waived, year)
        if missing:
            result.append((step, missing))
    return result
