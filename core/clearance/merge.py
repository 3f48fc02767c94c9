"""The three-way merge of a returned workbook: baseline (issued) vs returned vs store, as pure decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lixiao.core.manual import rules
from lixiao.core.manual.identity import mask_ids_in_text
from lixiao.core.manual.marks import SHIFTED_COLUMN, column_shifted, mark_label
from lixiao.core.manual.model import Flow, Status, Student
from lixiao.core.storage.chain import Event

from .baseline import Baseline, IssuedCell
from .issuance import batch_ident, waiver_ident
from .mergeplan import (
    CONFLICT,
    IGNORE,
    NOOP,
    Change,
    ChangeKind,
    Conflict,
    MergeInput,
    MergePlan,
    Refusal,
    RefusalKind,
    ReturnedRowLike,
    WaiverChange,
    cell_decision,
)

if TYPE_CHECKING:
    from lixiao.core.storage.store import StatusRow, Store

__all__ = ["CONFLICT", "IGNORE", "NOOP", "Change", "ChangeKind", "MergeInput", "MergePlan", "Refusal", "apply_plan",
           "cell_decision", "plan_merge"]


def plan_merge(
    flow: Flow,
    year: int,
    checkpoint_code: str,
    baseline: Baseline,
    returned: MergeInput,
    students: Mapping[str, Student],
    stored: Mapping[str, Mapping[str, StatusRow]],
    waived: Mapping[str, set[str]],
    row_key: Callable[[str], str] | None = None,
    lenders: Mapping[str, set[str]] | None = None,
) -> MergePlan:
    """Decide every cell of one returned workbook against the baseline and the store (no writes). ``lenders``:
    which lenders confirmed each student's national loan (Store.confirmed_lenders; none when not given).

    With ``row_key`` (the workbook was issued with a 行校验 column) a row whose key is not the key of the
    学号 or group now standing in it is refused whole: its cells no longer belong together.
    """
    plan = MergePlan()
    checkpoint = flow.checkpoint(checkpoint_code)
    if checkpoint.kind == "waiver":
        _plan_waivers(flow, year, baseline, returned, students, stored, waived, plan, row_key)
        return plan
    merger = _OfficeMerge(flow, year, baseline, returned, students, stored, waived, row_key, plan,
                          {s.code for s in checkpoint.steps}, lenders or {})
    for no in sorted(set(merger.cells) - set(returned.rows)):
        plan.warnings.append(f"学号 {no} 的行在交回的文件中不见了（该生本次不作任何变更）")
    for no, row in sorted(returned.rows.items()):
        if merger.row_usable(no, row):
            merger.plan_row(no, row)
    merger.plan_batch()
    return plan


@dataclass
class _OfficeMerge:
    """The decisions of one office workbook's return: its 办理 rows, then its batch rows."""

    flow: Flow
    year: int
    baseline: Baseline
    returned: MergeInput
    students: Mapping[str, Student]
    stored: Mapping[str, Mapping[str, StatusRow]]
    waived: Mapping[str, set[str]]
    row_key: Callable[[str], str] | None
    plan: MergePlan
    own_steps: set[str]
    lenders: Mapping[str, set[str]]
    touched: set[tuple[str, str]] = field(default_factory=set)  # (学号, step) decided on the 办理 sheet

    def __post_init__(self) -> None:
        self.cells: Mapping[str, Mapping[str, IssuedCell]] = self.baseline.cells
        self.duplicated = {d.student_no for d in self.returned.duplicates}
        self.shifted = _shifted_columns(self.returned, self.cells, self.own_steps)
        # per step, the first row (in the returned sheet's order) whose issued box came back empty: a cell inserted
        # with shift down leaves exactly such a blank and moves every cell below it onto the next student
        self.first_blank: dict[str, int] = {}
        for no, row in self.returned.rows.items():
            for step in row.blank:
                if no in self.cells and self.cells[no].get(step) is not None:
                    self.first_blank[step] = min(row.row, self.first_blank.get(step, row.row))

    def row_usable(self, no: str, row: ReturnedRowLike) -> bool:
        """False (with a warning or a refusal) for a row not issued, duplicated, or out of line."""
        plan = self.plan
        if no not in self.cells:
            plan.warnings.append(f"第 {row.row} 行：学号 {no} 不在签发的名单中，已忽略")
            return False
        if no in self.duplicated:
            plan.warnings.append(f"学号 {no} 在文件中出现多次，该生本次不作任何变更，请核对")
            return False
        if self.row_key is not None and row.key != self.row_key(no):
            plan.misaligned.append(Refusal(no, "", _row_cells(row, self.flow), _MISALIGNED.format(row=row.row, no=no)))
            return False
        issued = dict(zip(self.baseline.identity_columns, self.baseline.identity.get(no, ()), strict=False))
        edited = [c for c, v in issued.items() if c in row.identity and row.identity[c] != v]
        if edited:
            # A cell of the row no longer holds what was issued for this 学号: edited, or moved apart from the
            # 学号 by a sort or paste over some columns. Either way the row's ticks cannot be trusted.
            shown = "、".join(_edited_cell(c, row.identity[c], issued[c]) for c in edited[:3])
            plan.misaligned.append(Refusal(no, "", _row_cells(row, self.flow),
                                           f"第 {row.row} 行：学号 {no} 的{shown}与名单不符——可能只对部分列排序、粘贴，"
                                           "或修改了信息列，整行未作任何变更；信息有误请告知协调人更正名单"))
            return False
        return True

    def plan_row(self, no: str, row: ReturnedRowLike) -> None:
        """Every own step cell of one 办理 row, and its remark."""
        remark = row.remark if row.remark != self.baseline.remarks.get(no, "") else ""
        changed_any = False
        stated = any(m in (Status.FAILED, Status.OPTIONAL) and (c := self.cells[no].get(s)) is not None
                     and m is not c.status for s, m in row.marks.items() if s in self.own_steps)
        for step, mark in row.marks.items():
            if step not in self.own_steps:
                continue
            issued = self.cells[no].get(step)
            if issued is None:
                if mark is not Status.PENDING:
                    self.plan.refusals.append(Refusal(no, step, mark_label(mark),
                                                      f"该生不需要办理“{self.flow.steps[step].name}”（不适用）",
                                                      _refusal_kind(mark)))
                continue
            if mark is not issued.status:
                self.touched.add((no, step))  # a batch row does not override what the 办理 sheet decided
            if (MAIN, step) in self.shifted:
                if mark is not issued.status:
                    shown = "（空）" if step in row.blank else mark_label(mark)
                    self.plan.refusals.append(Refusal(no, step, shown, SHIFTED_COLUMN, _refusal_kind(mark)))
                continue
            below = self.first_blank.get(step)
            if below is not None and row.row > below and mark is not issued.status:
                self.plan.refusals.append(Refusal(no, step, "（空）" if step in row.blank else mark_label(mark),
                                                  BELOW_EMPTIED.format(row=below), _refusal_kind(mark)))
                continue
            if step in row.blank and issued.status is not Status.PENDING:
                shown = EMPTIED_BOX.format(issued=mark_label(issued.status))
                self.plan.refusals.append(Refusal(no, step, "（空）", shown))
                continue
            # the 备注 typed in this return is the reason of a 未通过 / 可办可不办 in the row; a tick beside one does
            # not take it (it is that failure's reason, not a note on the tick)
            note = remark if mark is not Status.PASSED or not stated else ""
            if _decide(self.flow, self.year, self.students[no], step, issued, mark, self.stored, self.waived, note,
                       ChangeKind.APPLIED, self.plan, self.lenders.get(no, set())):
                changed_any = True
                if mark is Status.FAILED and not remark:
                    self.plan.warnings.append(
                        f"第 {row.row} 行：学号 {no} 的“{self.flow.steps[step].name}”将记为未通过，"
                        "但本次备注中没有写原因（如“图书未还”“欠费”）；请在备注中补写原因后再交回")
        if remark and not changed_any:
            self.plan.notes.append((no, remark))

    def plan_batch(self) -> None:
        """Batch rows: each newly ticked group expands to its issued members not decided on the 办理 sheet."""
        plan, returned = self.plan, self.returned
        groups = self.baseline.groups
        issued_ticks = self.baseline.batch
        misaligned: set[tuple[str, str]] = set()
        for mode, group, key, cell in returned.batch_rows:
            if self.row_key is not None and group in groups.get(mode, {}) \
                    and key != self.row_key(batch_ident(mode, group)):
                misaligned.add((mode, group))
                plan.misaligned.append(Refusal("", "", f"{cell} {group}",
                                               _MISALIGNED_GROUP.format(cell=cell, group=group)))
        skipped = {r.student_no for r in plan.misaligned}  # a row in doubt gets nothing from a batch row either
        for tick in returned.batch:
            issued_ticked = bool(issued_ticks.get(tick.mode, {}).get(tick.group, {}).get(tick.step, False))
            if tick.step not in self.own_steps or tick.ticked == issued_ticked or (tick.mode, tick.group) in misaligned:
                continue
            if (tick.mode, tick.step) in returned.shifted:
                if tick.ticked:
                    plan.refusals.append(Refusal("", tick.step, f"{tick.cell} {tick.group}", SHIFTED_COLUMN))
                continue
            if not tick.ticked:
                plan.batch_unticked.add(tick.step)
                plan.warnings.append(f"批量表 {tick.cell}（{tick.group}）取消勾选不会撤销任何学生；"
                                     "如需撤销请在“办理”表逐个取消")
                continue
            members = groups.get(tick.mode, {}).get(tick.group)
            if members is None:
                plan.warnings.append(f"批量表 {tick.cell}：“{tick.group}”不是签发时的分组，已忽略")
                continue
            for no in members:
                issued = self.cells.get(no, {}).get(tick.step)
                if (issued is None or (no, tick.step) in self.touched or no in self.duplicated
                        or no not in returned.rows or no in skipped):
                    continue  # not applicable, decided on the 办理 sheet, or the row is in doubt
                current = self.stored.get(no, {}).get(tick.step)
                if issued.status is Status.FAILED or (current is not None and current.status is Status.FAILED):
                    name = self.flow.steps[tick.step].name
                    plan.warnings.append(f"批量表 {tick.cell}（{tick.group}）：学号 {no} 的“{name}”是未通过，"
                                         "批量勾选没有改变它；该生办完后请在“办理”表逐个勾选")
                    continue
                self.touched.add((no, tick.step))
                _decide(self.flow, self.year, self.students[no], tick.step, issued, Status.PASSED, self.stored,
                        self.waived, f"按{_mode_name(tick.mode)}批量：{tick.group}", ChangeKind.BATCH, plan,
                        self.lenders.get(no, set()))


_MISALIGNED = ("第 {row} 行：“行校验”与学号 {no} 不符——这一行的学号与其他单元格已错开（可能只选中了部分列排序，"
               "或在部分列中粘贴、插入、删除了单元格），整行未作任何变更")
_MISALIGNED_GROUP = ("批量表 {cell}：“行校验”与分组“{group}”不符——分组名与勾选格已错开（可能只对部分列排序），"
                     "整行未作任何变更")


def _edited_cell(column: str, returned: str, issued: str) -> str:
    """An identity cell that no longer holds what was issued, as the receipt says it (身份证号 masked: where the
    change lies in the hidden digits, say so rather than show two equal-looking numbers)."""
    shown, was = mask_ids_in_text(returned), mask_ids_in_text(issued)
    if shown == was:
        return f"{column}“{shown}”被改动过（改在隐去的中间几位）"
    return f"{column}“{shown}”（签发时为“{was}”）"


def _row_cells(row: ReturnedRowLike, flow: Flow) -> str:
    """A returned row's cells as the receipt lists them: 姓名 and what each step cell held."""
    marks = "，".join(f"{flow.steps[s].name if s in flow.steps else s}：{mark_label(m)}" for s, m in row.marks.items())
    return f"{row.identity.get('姓名', '')}；{marks}" if marks else row.identity.get("姓名", "")


def _refusal_kind(mark: Status) -> RefusalKind:
    return RefusalKind.NEW_TICK if mark is Status.PASSED else RefusalKind.OTHER


MAIN, WAIVERS = "办理", "解除限制"
BELOW_EMPTIED = ("同一列上面第 {row} 行的勾选格是空的：这与插入单元格（下面的格子整体下移一行）看不出区别，"
                 "为免记到别的学生名下，这一格以下新改的内容都没有生效。请不要只把那个空格子补上——若插入过单元格，"
                 "补上后勾选仍然错位；请在系统发给您的原文件中按实际办理情况重新勾选，再交回"
                 "（这里列出的是勾选现在所在的行，插入过单元格时可能错了一行）")
EMPTIED_BOX = ("这个格子被清空了（签发时为“{issued}”）：看不出是要取消还是误删，本格未作变更，同列其他格子照常处理。"
               "要取消请选 FALSE 或输入“未办理”（Excel 365 直接点一下复选框）；如是误删，无需处理")


def _shifted_columns(returned: MergeInput, cells: Mapping[str, Mapping[str, IssuedCell]],
                     own_steps: set[str]) -> set[tuple[str, str]]:
    """The 办理 columns that may have moved apart from their rows (marks.column_shifted, over the rows in the
    order they stand in the returned sheet); a box emptied in the middle of a column is not one of them."""
    shifted = {(where, step) for where, step in returned.shifted}
    rows = sorted(((no, r) for no, r in returned.rows.items() if no in cells), key=lambda item: item[1].row)
    for step in own_steps:
        boxes = [r for no, r in rows if cells[no].get(step) is not None]
        grey = [r for no, r in rows if cells[no].get(step) is None and step in r.marks and step not in r.blank]
        if column_shifted(value_below_rows=(MAIN, step) in shifted,
                          last_box_empty=bool(boxes) and step in boxes[-1].blank,
                          value_where_no_box=bool(grey),
                          unticked_where_no_box=any(r.marks[step] is Status.PENDING for r in grey),
                          box_empty=any(step in r.blank for r in boxes)):
            shifted.add((MAIN, step))
    return shifted


def _mode_name(mode: str) -> str:
    return {"class": "班级", "dorm": "宿舍", "college": "学院"}.get(mode, mode)


def _decide(
    flow: Flow, year: int, student: Student, step: str, issued: IssuedCell, mark: Status,
    stored: Mapping[str, Mapping[str, StatusRow]], waived: Mapping[str, set[str]], remark: str, kind: ChangeKind,
    plan: MergePlan, lenders: set[str] | None = None,
) -> bool:
    """Add the decision for one cell to the plan; True when a change will be written."""
    no = student.student_no
    rows = stored.get(no, {})
    current = rows.get(step)
    decision = cell_decision(issued.status, issued.version, mark, current)
    if decision in (IGNORE, NOOP):
        if mark is Status.FAILED and remark and current is not None and current.status is Status.FAILED \
                and current.remark != remark and (not current.remark or current.version <= issued.version):
            # a 未通过 re-stated with a reason written this time (the receipt asked for one), or its reason changed
            # in a copy issued after the last change: the reason is kept
            plan.changes.append(Change(no, step, Status.FAILED.value, Status.FAILED, remark, ChangeKind.REASON))
            return True
        plan.unchanged += decision == NOOP
        return False
    current_label = (current.status if current else Status.PENDING).label
    if decision == CONFLICT:
        plan.conflicts.append(Conflict(no, step, mark_label(issued.status), mark_label(mark), current_label, remark))
        return False
    if mark is not Status.PENDING:  # 未办理 is always allowed; a tick, 未通过 or 可办可不办 is checked like lixiao set
        statuses = {code: row.status for code, row in rows.items()}
        allowed = rules.may_set(flow, student, step, mark, statuses, waived.get(no, set()), year, lenders or set())
        if not allowed.allowed:
            plan.refusals.append(Refusal(no, step, mark_label(mark), allowed.reason, _refusal_kind(mark)))
            return False
    # taking back what was recorded: a pass un-passed, or a 未通过 / 可办可不办 returned empty (FALSE)
    revoked = (issued.ticked and mark is not Status.PASSED) or (
        issued.status is not Status.PENDING and mark is Status.PENDING)
    plan.changes.append(Change(no, step, current.status.value if current else "", mark, remark,
                               ChangeKind.REVOKED if revoked else kind))
    return True


def _plan_waivers(
    flow: Flow, year: int, baseline: Baseline, returned: MergeInput, students: Mapping[str, Student],
    stored: Mapping[str, Mapping[str, StatusRow]], waived: Mapping[str, set[str]], plan: MergePlan,
    row_key: Callable[[str], str] | None,
) -> None:
    issued = baseline.waivers
    for tick in returned.waivers:
        key = f"{tick.student_no}|{tick.step}"
        if key not in issued:
            plan.warnings.append(f"{tick.cell}：学号 {tick.student_no} 的“{tick.step}”不在签发的名单中，已忽略")
            continue
        if row_key is not None and tick.key != row_key(waiver_ident(tick.student_no, tick.step)):
            plan.misaligned.append(Refusal(tick.student_no, tick.step, "解除限制" if tick.lifted else "",
                                           f"{tick.cell}：“行校验”与学号 {tick.student_no} 不符——这一行的单元格已错开"
                                           "（可能只对部分列排序或粘贴），整行未作任何变更",
                                           RefusalKind.NEW_LIFT if tick.lifted else RefusalKind.OTHER))
            continue
        was_lifted, _ = issued[key]
        if (WAIVERS, "") in returned.shifted:
            if tick.lifted != bool(was_lifted):
                kind = RefusalKind.NEW_LIFT if tick.lifted else RefusalKind.OTHER
                plan.refusals.append(Refusal(tick.student_no, tick.step, "解除限制" if tick.lifted else "未勾选",
                                             SHIFTED_COLUMN, kind))
            continue
        if was_lifted and tick.blank:
            plan.refusals.append(Refusal(tick.student_no, tick.step, "（空）",
                                         "“解除限制”格被清空，不是明确的取消勾选，限制未重新开启；"
                                         "如需重新开启请取消勾选或选 FALSE"))
            continue
        if tick.lifted == bool(was_lifted):
            continue
        student = students[tick.student_no]
        now_lifted = tick.step in waived.get(tick.student_no, set())
        if tick.lifted == now_lifted:
            plan.unchanged += 1
            continue
        if tick.lifted:
            row = stored.get(tick.student_no, {}).get(tick.step)
            status = row.status if row else Status.PENDING
            decision = rules.may_waive(flow, student, tick.step, status, now_lifted, year)
            if decision.allowed:
                decision = rules.waiver_reason(tick.reason)
            if not decision.allowed:
                plan.refusals.append(Refusal(tick.student_no, tick.step, "解除限制", decision.reason,
                                             RefusalKind.NEW_LIFT))
                continue
        plan.waiver_changes.append(WaiverChange(tick.student_no, tick.step, tick.lifted, tick.reason.strip(),
                                                tick.evidence.strip()))


def apply_plan(store: Store, plan: MergePlan, *, source: str, operator: str, source_hash: str) -> None:
    """Write a merge plan: statuses, waivers, refused ticks, conflicts and notes; call inside a transaction."""
    store.write_statuses([(c.student_no, c.step, c.new, c.remark, c.kind.value) for c in plan.changes], source=source,
                         operator=operator, source_hash=source_hash)
    for w in plan.waiver_changes:
        if w.lift:
            store.add_waiver(w.student_no, w.step, w.reason, operator, w.evidence, source=source,
                             source_hash=source_hash)
        else:
            store.restore_waiver(w.student_no, w.step, operator, source=source, source_hash=source_hash)
    store.add_refused(source_hash, [(r.student_no, r.step, r.value, r.reason) for r in plan.refusals])
    store.add_conflicts(source_hash, [(c.student_no, c.step, c.issued, c.returned, c.current, c.remark)
                                      for c in plan.conflicts])
    store.append_audit([Event("remark", student_no=no, detail=text, source=source, source_hash=source_hash,
                              operator=operator, decision="noted") for no, text in plan.notes])
