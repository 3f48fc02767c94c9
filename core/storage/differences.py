"""Rows of the statuses, waivers and returns tables that disagree with the replayed audit chain, and how
`lixiao verify` says so."""

from __future__ import annotations

from dataclasses import dataclass, field

EXAMPLES = 3  # how many examples a problem line names
# A statuses row as the chain replays it: (status, remark, version, updated_at, source, operator).
StatusFields = tuple[str, str, int, str, str, str]


@dataclass
class Differences:
    """Rows of the statuses, waivers and returns tables that disagree with the replayed chain."""

    status_changed: list[tuple[tuple[str, str], StatusFields, StatusFields]] = field(default_factory=list)
    status_missing: list[tuple[str, str]] = field(default_factory=list)
    status_extra: list[tuple[str, str]] = field(default_factory=list)
    waiver_missing: list[tuple[str, str]] = field(default_factory=list)
    waiver_extra: list[tuple[str, str]] = field(default_factory=list)
    ledger_missing: list[tuple[str, str]] = field(default_factory=list)
    ledger_changed: list[tuple[str, str]] = field(default_factory=list)
    ledger_extra: list[tuple[str, str]] = field(default_factory=list)

    def any(self) -> bool:
        """Whether anything disagrees."""
        return any(getattr(self, name) for name in self.__dataclass_fields__)

    def lines(self) -> list[str]:
        """One Chinese problem line per kind of disagreement, naming the first few."""
        fix = "；运行 lixiao verify --repair 可按审计记录恢复"

        def cells(keys: list[tuple[str, str]]) -> str:
            return "、".join(f"{no} {step}" for no, step in keys[:EXAMPLES])

        def files(rows: list[tuple[str, str]]) -> str:
            return "、".join(f"“{name}”（{str(digest)[:12]}）" for digest, name in rows[:EXAMPLES])

        lines = []
        if self.status_changed:
            examples = "、".join(f"{no} {step}：{_status_difference(row, want)}"
                                 for (no, step), row, want in self.status_changed[:EXAMPLES])
            lines.append(f"状态表中 {len(self.status_changed)} 处与审计记录不符（状态被改动），如 {examples}{fix}")
        for found, said, named in (
                (self.status_missing, "状态表缺少 {n} 行审计记录中的状态（状态行被删除）", cells),
                (self.status_extra, "状态表中 {n} 行没有审计记录（状态行被伪造）", cells),
                (self.waiver_missing, "解除限制表缺少 {n} 条审计记录中仍有效的解除限制（记录被删除或撤销）", cells),
                (self.waiver_extra, "解除限制表中 {n} 条有效记录与审计记录不符（记录被伪造或改动）", cells),
                (self.ledger_missing, "台账缺少 {n} 个审计记录中处理过的文件（台账行被删除）", files),
                (self.ledger_changed, "台账中 {n} 个文件的状态与审计记录不符（台账被改动）", files),
                (self.ledger_extra, "台账中 {n} 个文件没有审计记录（台账行被伪造）", files)):
            if found:
                lines.append(f"{said.format(n=len(found))}，如 {named(found)}{fix}")
        return lines


_STATUS_FIELDS = ("状态", "备注", "版本", "时间", "来源", "操作人")


def _status_difference(row: StatusFields, want: StatusFields) -> str:
    """Which fields of a status row differ from the replayed chain: 表中 … 审计记录为 …."""
    parts = [f"{name}表中为“{a}”，审计记录为“{b}”" for name, a, b in zip(_STATUS_FIELDS, row, want, strict=False)
             if a != b]
    return "；".join(parts[:3])
