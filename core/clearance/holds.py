"""Why a return waits for the coordinator instead of being applied: what its plan would take back, and the
pattern of ticks that moved on their own (a tick column, or a batch column, sorted or shifted alone)."""

from __future__ import annotations

from lixiao.core.manual.model import Status

from .mergeplan import ChangeKind, MergePlan, RefusalKind


def hold_reason(plan: MergePlan, max_revocations: int) -> str:
    """Why a return waits for the coordinator ("" when it does not): it would revoke more than ``max_revocations``
    passed cells (or lifted restrictions), or one column both revokes and newly ticks cells — what a tick column
    sorted or shifted on its own does (the passed ticks move to other students); a clerk correcting one slip is
    held too, and confirmed."""
    revoked = plan.revocations + sum(not w.lift for w in plan.waiver_changes)
    if revoked > max_revocations:
        return (f"本文件会撤销 {revoked} 个已记录的格子（已通过、未通过）或已解除的限制，超过 {max_revocations} 个"
                "（lixiao.toml [sync] max_revocations）。撤销很少见，常见原因是只对勾选列排序或粘贴，"
                "使勾选错位到别的学生。整个文件尚未生效，等待协调人确认")
    moved: dict[str, list[int]] = {}  # per column: [new ticks (applied or refused), revocations]
    for change in plan.changes:
        if change.kind in (ChangeKind.APPLIED, ChangeKind.REVOKED):
            moved.setdefault(change.step, [0, 0])[change.kind is ChangeKind.REVOKED] += 1
    for refusal in plan.refusals:
        if refusal.kind is RefusalKind.NEW_TICK and refusal.step:
            moved.setdefault(refusal.step, [0, 0])[0] += 1
        elif refusal.kind is RefusalKind.NEW_LIFT:
            moved.setdefault(f"waiver:{refusal.step}", [0, 0])[0] += 1
    for w in plan.waiver_changes:
        moved.setdefault(f"waiver:{w.step}", [0, 0])[not w.lift] += 1
    unexplained = sum(c.new is Status.FAILED and not c.remark for c in plan.changes)
    if unexplained > max_revocations:
        return (f"本文件会把 {unexplained} 个格子记为未通过却没有写原因，超过 {max_revocations} 个："
                "常见原因是整列误填了 ×，或对勾选列单独排序。整个文件尚未生效，等待协调人核对后确认")
    for step in sorted(plan.batch_unticked):
        passed = sum(c.kind is ChangeKind.BATCH and c.step == step for c in plan.changes)
        if passed:
            return (f"本文件的批量表中，同一列既取消了签发时已勾选的分组，又新勾选了别的分组（{passed} 名学生会因此"
                    "记为已通过）：这正是只对批量表的勾选列排序时勾选整体错位的样子。整个文件尚未生效，"
                    "等待协调人核对后确认（若确是改正笔误，确认即可）")
    for added, taken in moved.values():
        if added and taken:
            return (f"本文件在同一列中撤销了 {taken} 个已记录的格子（或已解除的限制），又新填了 {added} 个"
                    "（勾选、未通过或可办可不办）："
                    "这正是只对勾选列排序、或在勾选列中插入/删除单元格时勾选整体错位的样子。整个文件尚未生效，"
                    "等待协调人核对后确认（若确是改正笔误，确认即可）")
    return ""
