"""What a returned step cell means: 已通过, 未办理, 未通过, 可办可不办 — or something staff must be asked about."""

from __future__ import annotations

from .identity import clean_text
from .model import Status

TICKED = frozenset({"✓", "√", "✔", "☑", "是", "Y", "YES", "1", "TRUE", "通过", "已通过", "=TRUE()", "T"})
UNTICKED = frozenset({"", "FALSE", "0", "否", "N", "NO", "=FALSE()", "☐", "□", "未办理"})
# The manual's two other statuses, typed into a step cell. A Latin x is not among them: in some hands it is a
# tick, in others a cross, so it is refused like any unclear mark (× ✗ and 未通过 are unambiguous); a lone F
# (FALSE to some, fail to others) likewise.
FAILED = frozenset({"×", "✗", "✘", "╳", "叉", "不通过", "未通过"})
OPTIONAL = frozenset({"○", "◯", "可办可不办"})
AMBIGUOUS = frozenset({"X", "F"})

# What the writer puts in a step cell whose status is not a plain tick or blank (read back as the same status).
WRITTEN = {Status.FAILED: "未通过", Status.OPTIONAL: "可办可不办"}


def read_status(value: object) -> Status | None:
    """The status a step cell states: PASSED (a tick), PENDING (empty or unticked), FAILED (× ✗ 不通过 未通过),
    OPTIONAL (○ 可办可不办) — or None for a mark that must not be guessed.

    Accepts booleans (Excel 365 checkboxes, WPS, LibreOffice), 1/0 numbers (LibreOffice may save a typed TRUE as
    1), and typed marks (✓ √ ✔ 是 Y y 1 TRUE 通过 / empty FALSE 0 否 N).
    """
    if value is None:
        return Status.PENDING
    if isinstance(value, bool):
        return Status.PASSED if value else Status.PENDING
    if isinstance(value, int | float):
        return {1.0: Status.PASSED, 0.0: Status.PENDING}.get(float(value))
    text = clean_text(str(value)).upper()
    if text in TICKED:
        return Status.PASSED
    if text in UNTICKED:
        return Status.PENDING
    if text in FAILED:
        return Status.FAILED
    if text in OPTIONAL:
        return Status.OPTIONAL
    return None


def read_mark(value: object) -> bool | None:
    """True for a tick, False for an empty or unticked cell, None for anything else (a yes/no cell: roster
    flags, batch rows, 解除限制)."""
    status = read_status(value)
    return {Status.PASSED: True, Status.PENDING: False}.get(status) if status else None


def mark_label(status: Status) -> str:
    """How a receipt or the review queue names what a step cell held (已勾选 / 未勾选 / 未通过 / 可办可不办)."""
    return {Status.PASSED: "已勾选", Status.PENDING: "未勾选"}.get(status, status.label)


def label_status(label: str) -> Status | None:
    """The status a ``mark_label`` names (a stored conflict's or refused cell's value), None for other text."""
    return next((s for s in (Status.PASSED, Status.PENDING, Status.FAILED, Status.OPTIONAL) if mark_label(s) == label),
                None)


SHIFTED_COLUMN = ("这一列的勾选格可能与所在行错开了（插入或删除了单元格、只对这一列排序，"
                  "或清空了这一列最后一个勾选格），本列的勾选全部未生效；"
                  "请在系统发给您的原文件中重新勾选（取消勾选请选 FALSE 或输入“未办理”）后交回")


def column_shifted(*, value_below_rows: bool, last_box_empty: bool, value_where_no_box: bool = False,
                   unticked_where_no_box: bool = False, box_empty: bool = False) -> bool:
    """Whether a tick column may have moved apart from its rows — the one rule for every ticking sheet.

    A box emptied with Delete costs only itself; what only a moved column shows is: a value below the last row
    (cells inserted with shift down); the last issued box empty (cells deleted with shift up pull the column up
    from below, and a column sorted alone puts its blanks last); an unticked box (FALSE) in a cell issued without
    a box (a grey, not-applicable cell — nobody types FALSE there); or any value in such a cell while an issued
    box elsewhere in the column came back empty (a not-applicable blank and a box that changed places).
    """
    return (value_below_rows or last_box_empty or unticked_where_no_box
            or (value_where_no_box and box_empty))
