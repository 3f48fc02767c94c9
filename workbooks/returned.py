"""What a returned workbook holds once read: its token, rows, batch and waiver ticks, anomalies (plain data,
passed from the sandboxed parser as JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lixiao.core.model import Status


class ReadError(ValueError):
    """The file is not a readable lixiao workbook at all; the message says why, in Chinese."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A cell or structure the reader would not guess about; kept and reported, never treated as unticked."""

    code: str
    reason: str
    sheet: str = ""
    cell: str = ""
    student_no: str = ""
    step: str = ""
    value: str = ""


@dataclass
class ReturnedRow:
    """One student row of the 办理 sheet as returned."""

    row: int
    student_no: str
    identity: dict[str, str]
    marks: dict[str, Status]  # step → what its cell states (已通过, 未办理, 未通过, 可办可不办)
    remark: str
    key: str = ""  # the 行校验 cell as returned
    blank: list[str] = field(default_factory=list)  # steps whose cell came back empty (not a clear untick)


@dataclass(frozen=True, slots=True)
class BatchTick:
    """One batch-sheet checkbox: a group (class, dorm, college), a step, ticked or not."""

    mode: str
    group: str
    step: str
    ticked: bool
    cell: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class WaiverTick:
    """One row of the special desk: lift (ticked) or keep (unticked) a restriction, with its reason."""

    student_no: str
    step: str
    lifted: bool
    reason: str
    cell: str
    key: str = ""
    blank: bool = False  # the 解除限制 cell came back empty (not a clear untick)
    evidence: str = ""  # the 凭证 cell (workbooks issued before it existed have none)


@dataclass
class TokenInfo:
    """The workbook's identity as found in the file, and whether its signature holds."""

    payload: dict[str, Any] | None
    payload_text: str
    signature: str
    status: str  # valid | bad_signature | missing | malformed | unverified
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class Returned:
    """Everything read from a returned workbook."""

    token: TokenInfo
    operator: str = ""
    rows: dict[str, ReturnedRow] = field(default_factory=dict)
    duplicates: list[ReturnedRow] = field(default_factory=list)
    batch: list[BatchTick] = field(default_factory=list)
    waivers: list[WaiverTick] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    students_match: bool | None = None  # returned 学号 set equals the issued one (by hash)
    batch_rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # (mode, group, 行校验, cell) of each row
    waiver_students: list[str] = field(default_factory=list)  # every 学号 on the 解除限制 sheet, readable or not


def returned_to_dict(returned: Returned) -> dict[str, Any]:
    """A JSON-safe form of a Returned (for the sandbox child's answer)."""
    from dataclasses import asdict

    return asdict(returned)


def returned_from_dict(data: dict[str, Any]) -> Returned:
    """Rebuild a Returned from ``returned_to_dict`` output."""
    token = TokenInfo(**data["token"])
    return Returned(
        token=token,
        operator=data["operator"],
        rows={k: _row(v) for k, v in data["rows"].items()},
        duplicates=[_row(v) for v in data["duplicates"]],
        batch=[BatchTick(**v) for v in data["batch"]],
        waivers=[WaiverTick(**v) for v in data["waivers"]],
        anomalies=[Anomaly(**v) for v in data["anomalies"]],
        students_match=data["students_match"],
        batch_rows=[(r[0], r[1], r[2], r[3]) for r in data["batch_rows"]],
        waiver_students=list(data["waiver_students"]),
    )


def _row(data: dict[str, Any]) -> ReturnedRow:
    return ReturnedRow(**{**data, "marks": {step: Status(code) for step, code in data["marks"].items()}})
