"""What a three-way merge decides: the cell decision, the changes, refusals and conflicts of a plan, and the
shape of the returned workbook it reads (Protocols over workbooks.returned, so core imports no reader)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from lixiao.core.manual.model import Status

if TYPE_CHECKING:
    from lixiao.core.storage.store import StatusRow


class CellDecision(StrEnum):
    """What the three-way merge does with one returned cell."""

    IGNORE = "ignore"  # untouched since issue
    NOOP = "noop"  # changed to what the store already holds
    CONFLICT = "conflict"  # the store moved on since issue: kept for review, store unchanged
    APPLY = "apply"


IGNORE, NOOP, CONFLICT, APPLY = CellDecision


class ChangeKind(StrEnum):
    """Why a status is written (the audit event's decision)."""

    APPLIED = "applied"  # ticked on the 办理 sheet
    REVOKED = "revoked"  # a box ticked at issue returned unticked
    BATCH = "batch"  # ticked through a batch row
    REASON = "reason"  # a 未通过 kept, its reason written in a later return


class RefusalKind(StrEnum):
    """What a refused cell was: a new tick, a new lift of a restriction, or anything else (a row out of line, an
    unreadable mark, an untick in a shifted column) — what the hold rule counts."""

    NEW_TICK = "new_tick"
    NEW_LIFT = "new_lift"
    OTHER = "other"


def cell_decision(issued: Status, issued_version: int, returned: Status, store: StatusRow | None) -> CellDecision:
    """One cell: untouched → ignore; equal to store → noop; store moved on since issue → conflict; else apply.

    ``issued`` and ``returned`` are what the cell stated (PASSED a tick, PENDING empty or unticked, FAILED 未通过,
    OPTIONAL 可办可不办). Versions, not only values: a copy issued at version 1 that re-ticks a cell revoked at
    version 3 is a conflict, whichever order the files arrive in.
    """
    if returned is issued:
        return IGNORE
    if (store.status if store is not None else Status.PENDING) is returned:
        return NOOP
    store_version = store.version if store else 0
    if store_version > issued_version:
        return CONFLICT
    return APPLY


@dataclass(frozen=True, slots=True)
class Change:
    """A status to write."""

    student_no: str
    step: str
    old: str
    new: Status
    remark: str
    kind: ChangeKind


@dataclass(frozen=True, slots=True)
class Refusal:
    """A tick kept but not applied, with its reason (the manual's words for prerequisites)."""

    student_no: str
    step: str
    value: str  # what the returned cell held, as the receipt shows it
    reason: str
    kind: RefusalKind = RefusalKind.OTHER


@dataclass(frozen=True, slots=True)
class Conflict:
    """A cell changed both in the return and in the store since issue; kept for review, store unchanged."""

    student_no: str
    step: str
    issued: str
    returned: str
    current: str
    remark: str = ""  # the 备注 returned with it (a 未通过's reason), applied if the coordinator takes the value


@dataclass(frozen=True, slots=True)
class WaiverChange:
    """Lift or restore one restriction from the special desk's workbook."""

    student_no: str
    step: str
    lift: bool
    reason: str
    evidence: str = ""


@dataclass
class MergePlan:
    """Everything one returned workbook would do, decided against one snapshot of the store."""

    changes: list[Change] = field(default_factory=list)
    waiver_changes: list[WaiverChange] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (学号, remark) changed without a tick
    warnings: list[str] = field(default_factory=list)
    unchanged: int = 0
    misaligned: list[Refusal] = field(default_factory=list)  # rows whose 行校验 key is not their 学号's
    batch_unticked: set[str] = field(default_factory=set)  # steps whose batch box, issued ticked, came back unticked

    @property
    def revocations(self) -> int:
        """How many recorded cells this return would take back (a pass unticked, a 未通过 / 可办可不办 set to FALSE)."""
        return sum(c.kind is ChangeKind.REVOKED for c in self.changes)


class ReturnedRowLike(Protocol):
    """One returned 办理 row as the merge reads it (workbooks.returned.ReturnedRow)."""

    @property
    def row(self) -> int: ...
    @property
    def student_no(self) -> str: ...
    @property
    def identity(self) -> dict[str, str]: ...
    @property
    def marks(self) -> Mapping[str, Status]: ...
    @property
    def remark(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def blank(self) -> list[str]: ...


class BatchTickLike(Protocol):
    """One batch-sheet box as the merge reads it (workbooks.returned.BatchTick)."""

    @property
    def mode(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def ticked(self) -> bool: ...
    @property
    def cell(self) -> str: ...


class WaiverTickLike(Protocol):
    """One special-desk row as the merge reads it (workbooks.returned.WaiverTick)."""

    @property
    def student_no(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def lifted(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def cell(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def blank(self) -> bool: ...
    @property
    def evidence(self) -> str: ...


@dataclass
class MergeInput:
    """A returned office workbook reduced to what the merge needs (from workbooks.reader.Returned)."""

    rows: Mapping[str, ReturnedRowLike]  # by 学号
    batch: Sequence[BatchTickLike]
    duplicates: Sequence[ReturnedRowLike]
    waivers: Sequence[WaiverTickLike]
    batch_rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # (mode, group, 行校验, cell)
    shifted: set[tuple[str, str]] = field(default_factory=set)  # (办理 | mode | 解除限制, step): column out of line
