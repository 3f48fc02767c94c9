"""What a returned workbook holds once read: its token, rows, batch and waiver ticks, anomalies (plain data,
passed from the sandboxed parser as JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lixiao.core.manual.model import Status


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
    program: str = ""  # which program last saved the file (reader.saved_by)


WIRE_VERSION = 3


def returned_to_wire(returned: Returned) -> dict[str, Any]:
    """A compact JSON-safe form of a Returned (the sandbox child's answer): rows, ticks and anomalies as arrays,
    the identity headers and step codes once instead of in every row."""
    every = [*returned.rows.values(), *returned.duplicates]
    headers = list(dict.fromkeys(h for row in every for h in row.identity))
    codes = list(dict.fromkeys(c for row in every for c in row.marks))
    token = returned.token
    return {
        "v": WIRE_VERSION,
        "token": [token.payload, token.payload_text, token.signature, token.status, token.properties],
        "operator": returned.operator,
        "headers": headers,
        "codes": codes,
        "rows": [_row_wire(row, headers, codes) for row in returned.rows.values()],
        "duplicates": [_row_wire(row, headers, codes) for row in returned.duplicates],
        "batch": [[t.mode, t.group, t.step, t.ticked, t.cell, t.key] for t in returned.batch],
        "waivers": [[w.student_no, w.step, w.lifted, w.reason, w.cell, w.key, w.blank, w.evidence]
                    for w in returned.waivers],
        "anomalies": [[a.code, a.reason, a.sheet, a.cell, a.student_no, a.step, a.value] for a in returned.anomalies],
        "students_match": returned.students_match,
        "batch_rows": [list(r) for r in returned.batch_rows],
        "waiver_students": returned.waiver_students,
        "program": returned.program,
    }


def _row_wire(row: ReturnedRow, headers: list[str], codes: list[str]) -> list[Any]:
    identity, marks = row.identity, row.marks
    return [row.row, row.student_no, [identity.get(h) for h in headers],
            [None if (status := marks.get(c)) is None else status.value for c in codes], row.remark, row.key,
            row.blank]


def returned_from_wire(data: Any) -> Returned:
    """Rebuild a Returned from ``returned_to_wire`` output; ValueError when the answer is not of that shape (the
    parser child is not trusted either)."""
    try:
        if data["v"] != WIRE_VERSION:
            raise ValueError(f"wire version {data['v']!r}")
        headers = [str(h) for h in data["headers"]]
        codes = [str(c) for c in data["codes"]]
        payload, payload_text, signature, status, properties = data["token"]
        if payload is not None and not isinstance(payload, dict):
            raise ValueError("token payload")
        token = TokenInfo(payload, str(payload_text), str(signature), str(status),
                          {str(k): str(v) for k, v in dict(properties).items()})
        rows = [_row(r, headers, codes) for r in data["rows"]]
        match = data["students_match"]
        return Returned(
            token=token,
            operator=str(data["operator"]),
            rows={row.student_no: row for row in rows},
            duplicates=[_row(r, headers, codes) for r in data["duplicates"]],
            batch=[BatchTick(str(m), str(g), str(s), bool(t), str(c), str(k)) for m, g, s, t, c, k in data["batch"]],
            waivers=[WaiverTick(str(n), str(s), bool(lifted), str(r), str(c), str(k), bool(b), str(e))
                     for n, s, lifted, r, c, k, b, e in data["waivers"]],
            anomalies=[Anomaly(*map(str, a)) for a in data["anomalies"]],
            students_match=None if match is None else bool(match),
            batch_rows=[(str(m), str(g), str(k), str(c)) for m, g, k, c in data["batch_rows"]],
            waiver_students=[str(n) for n in data["waiver_students"]],
            program=str(data["program"])[:80],
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"解析进程的结果格式不对（{type(exc).__name__}）") from None


_STATUSES = {s.value: s for s in Status}


def _row(data: list[Any], headers: list[str], codes: list[str]) -> ReturnedRow:
    number, student_no, identity, marks, remark, key, blank = data
    if len(identity) != len(headers) or len(marks) != len(codes):
        raise ValueError("row width")
    return ReturnedRow(int(number), str(student_no),
                       {h: str(v) for h, v in zip(headers, identity, strict=True) if v is not None},
                       {c: _STATUSES[m] for c, m in zip(codes, marks, strict=True) if m is not None},
                       str(remark), str(key), [str(b) for b in blank])
