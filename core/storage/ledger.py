"""The returns ledger (one row per returned file's content hash, every change audited), the refused ticks and
conflicts kept for each return, and the lifted restrictions (waivers): mixins of the Store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum

from .chain import AuditChain, AuditEvent, Event, now
from .origin import Channel as Channel  # re-exported: the ledger's rows name their origin
from .origin import Origin as Origin


class LedgerState(StrEnum):
    """Where a returned file (keyed by its content hash) stands; the last four are its outcome."""

    RECEIVED = "received"  # seen; nothing else done yet
    STAGED = "staged"  # an exact copy kept in archive/.staging, so a crash cannot lose it
    MERGED = "merged"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"
    HELD = "held"  # waiting for `lixiao sync --confirm`
    MISDIRECTED = "misdirected"  # refused for where it was put, not what it holds: final for that place only


_DECIDED = frozenset({LedgerState.MERGED, LedgerState.REJECTED, LedgerState.QUARANTINED, LedgerState.HELD,
                      LedgerState.MISDIRECTED})
# The exactly-once state machine of a returned file, at a glance: from (None = no row yet) → allowed next states.
# A file too large to stage, or refused before staging, is decided straight away; a crash between received
# and staged leaves "received", from which the next attempt decides without staging; only a held return is
# decided again (merged, when the coordinator confirms it), and a misdirected one is staged again from another
# place. Merged, rejected and quarantined judge the content: never taken again (duplicate), whoever brings it.
TRANSITIONS: dict[LedgerState | None, frozenset[LedgerState]] = {
    None: frozenset({LedgerState.RECEIVED, LedgerState.REJECTED, LedgerState.QUARANTINED}),
    LedgerState.RECEIVED: frozenset({LedgerState.STAGED}) | _DECIDED,
    LedgerState.STAGED: _DECIDED,
    LedgerState.HELD: frozenset({LedgerState.MERGED}),
    LedgerState.MISDIRECTED: frozenset({LedgerState.STAGED}),
    LedgerState.MERGED: frozenset(),
    LedgerState.REJECTED: frozenset(),
    LedgerState.QUARANTINED: frozenset(),
}
# The refusals that depend on where a file came from, not on its bytes (a future "wrong_sender" joins them).
ORIGIN_REFUSALS = frozenset({"wrong_office"})


@dataclass
class ReturnDetail:
    """What the ledger keeps of a decided return (its ``detail`` column, JSON): a refusal's code and message, or a
    merged (held) return's counts, 经办人, workbook, warnings and receipt — everything its receipt is rebuilt from."""

    code: str = ""  # why the whole file was refused (or "held")
    message: str = ""
    applied: int = 0
    refused: int = 0
    conflicts: int = 0
    operator: str = ""
    title: str = ""
    scope: str = ""
    generation: int | None = None
    warnings: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # what a held return would do once confirmed
    receipt: str = ""  # relative to the data folder
    at: str = ""
    origin: str = ""  # Origin.describe() of how the return came (交回方式、交回人)
    program: str = ""  # which program last saved the file (WPS …, Microsoft Excel …, LibreOffice …, 未知)
    flagged: str = ""  # a merged return the coordinator should still look at (a sender not in the directory)

    def to_json(self) -> str:
        """The detail column's text (only what is set)."""
        defaults = ReturnDetail()
        return json.dumps({k: v for k, v in asdict(self).items() if v != getattr(defaults, k)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ReturnDetail:
        """The detail of a ledger row; unknown keys and values of the wrong type are ignored (never raises)."""
        try:
            raw = json.loads(text or "{}")
        except ValueError:
            return cls()
        if not isinstance(raw, dict):
            return cls()
        detail = cls()
        for f in fields(cls):
            value = raw.get(f.name)
            default = getattr(detail, f.name)
            if isinstance(default, list):
                if isinstance(value, list):
                    setattr(detail, f.name, [str(v) for v in value])
            elif f.name == "generation":
                if isinstance(value, int) and not isinstance(value, bool):
                    detail.generation = value
            elif isinstance(value, type(default)) and not isinstance(value, bool):
                setattr(detail, f.name, value)
        return detail


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One returned file's row: keyed by content hash, where it stands, and what was decided."""

    hash: str
    file_name: str
    state: LedgerState
    outcome: LedgerState | None
    workbook_id: str | None
    received_at: str
    updated_at: str
    detail: str
    channel: Channel
    sender: str
    message_id: str

    @property
    def details(self) -> ReturnDetail:
        """The decoded ``detail``."""
        return ReturnDetail.from_json(self.detail)


PLACE = "place:"  # the source of a misdirected decision's ledger event: where the file was put
_LEDGER_COLUMNS = ("hash, file_name, state, outcome, workbook_id, received_at, updated_at, detail, channel, sender, "
                   "message_id")


def _ledger_row(row: tuple[str, str, str, str | None, str | None, str, str, str, str, str, str]) -> LedgerRow:
    return LedgerRow(row[0], row[1], LedgerState(row[2]), LedgerState(row[3]) if row[3] else None, row[4], row[5],
                     row[6], row[7], Channel(row[8] or "inbox"), row[9], row[10])


@dataclass(frozen=True, slots=True)
class ConflictRow:
    """A conflict kept for review, with the returned file's name."""

    id: int
    return_hash: str
    student_no: str
    step: str
    baseline: str
    returned: str
    current: str
    created_at: str
    resolved_at: str | None
    file_name: str


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """A refused tick, with the returned file's name."""

    id: int
    return_hash: str
    student_no: str
    step: str
    value: str
    reason: str
    created_at: str
    file_name: str


@dataclass(frozen=True, slots=True)
class RejectionRow:
    """A file refused as a whole."""

    hash: str
    file_name: str
    outcome: str
    detail: str
    updated_at: str

    @property
    def details(self) -> ReturnDetail:
        """The decoded ``detail`` (its code and message)."""
        return ReturnDetail.from_json(self.detail)


@dataclass(frozen=True, slots=True)
class OfficeReturn:
    """Per issued checkpoint and scope: the latest generation and issue time, and the last merged return."""

    checkpoint: str
    scope: str
    generation: int
    issued_at: str
    returned_at: str | None
    returned_by: str = ""  # the last merged return's channel and sender (交回人), e.g. "mail dorm@x.edu.cn"
    operator: str = ""  # the 经办人 written in that return
    program: str = ""  # the program that saved it (WPS …, Microsoft Excel …, LibreOffice …, 未知)


@dataclass(frozen=True, slots=True)
class WaiverRow:
    """A lifted restriction in force, with the student's name, college and class (None when the student is
    missing) and the step's stored status ("" when nothing was stored)."""

    id: int
    student_no: str
    step: str
    reason: str
    evidence: str
    operator: str
    created_at: str
    restored_at: str | None
    restored_by: str | None
    name: str | None
    college: str
    class_name: str
    stored: str


class LedgerError(RuntimeError):
    """A ledger change the exactly-once state machine does not allow (a bug, never a user's doing)."""


class Ledger(AuditChain):
    """Returned files and what was kept of each (a Store mixin)."""

    def ledger(self, digest_hex: str) -> LedgerRow | None:
        """The ledger row of a returned file's content hash, or None."""
        row = self.db.execute(f"SELECT {_LEDGER_COLUMNS} FROM returns WHERE hash = ?", [digest_hex]).fetchone()
        return _ledger_row(row) if row else None

    def set_ledger(self, digest_hex: str, file_name: str, state: LedgerState, outcome: LedgerState | None = None,
                   workbook_id: str | None = None, detail: ReturnDetail | None = None,
                   origin: Origin | None = None) -> None:
        """Create or advance a ledger row (received → staged → outcome) with its audit event
        (old and new "state/outcome"); inside a transaction. ``origin`` is kept when the row is created, and when
        a misdirected file is staged again from another place (whose refusal's event names it: misdirected_at)."""
        stamp = now()
        previous = self.db.execute("SELECT state, outcome FROM returns WHERE hash = ?", [digest_hex]).fetchone()
        was = LedgerState(previous[0]) if previous else None
        if state not in TRANSITIONS[was]:
            raise LedgerError(f"台账状态不能从 {was or '（无）'} 变为 {state}（{digest_hex[:12]}）")
        again = was is LedgerState.MISDIRECTED  # taken again from another place: undecided until this take decides
        new_outcome = outcome if outcome is not None else (previous[1] if previous and not again else None)
        origin = origin or Origin()
        self.db.execute(
            "INSERT INTO returns (hash, file_name, state, outcome, workbook_id, received_at, updated_at, detail, "
            "channel, sender, message_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET state = excluded.state, "
            "outcome = excluded.outcome, workbook_id = coalesce(excluded.workbook_id, returns.workbook_id), "
            "updated_at = excluded.updated_at, detail = excluded.detail"
            + (", channel = excluded.channel, sender = excluded.sender, message_id = excluded.message_id"
               if again else ""),
            [digest_hex, file_name, state.value, new_outcome, workbook_id, stamp, stamp,
             detail.to_json() if detail else "", origin.channel.value, origin.sender, origin.message_id],
        )
        came = (PLACE + origin.place if state is LedgerState.MISDIRECTED else  # where it was refused for
                "" if previous and not again else " ".join(filter(None, [origin.describe(), origin.message_id])))
        self.append_audit([Event("ledger", source_hash=digest_hex, source=came,
                                 old=f"{previous[0]}/{previous[1] or ''}" if previous else "",
                                 new=f"{state}/{new_outcome or ''}", detail=file_name, at=stamp)])

    def misdirected_at(self, digest_hex: str) -> set[str]:
        """Every place (``Origin.place``) a file's content was refused for coming from: from the chain itself."""
        return {str(r[0]).removeprefix(PLACE) for r in self.db.execute(
            "SELECT source FROM audit WHERE source_hash = ? AND kind = 'ledger' AND new = ?",
            [digest_hex, f"{LedgerState.MISDIRECTED}/{LedgerState.MISDIRECTED}"])}

    def audit_events(self, source_hash: str) -> list[AuditEvent]:
        """Every audit event of one returned file (its content hash), oldest first: what its receipt says."""
        return self.events_where("source_hash", source_hash)

    def audit_count_of(self, source_hash: str) -> int:
        """How many audit events one returned file (its content hash) has."""
        return int(self.db.execute("SELECT count(*) FROM audit WHERE source_hash = ?", [source_hash]).fetchone()[0])

    def ledger_rows(self) -> list[LedgerRow]:
        """Every ledger row, oldest first."""
        return [_ledger_row(r) for r in self.db.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM returns ORDER BY received_at, hash")]

    def add_refused(self, digest_hex: str, rows: list[tuple[str, str, str, str]]) -> None:
        """Keep refused ticks (学号, step, value, reason) of one return; inside a transaction."""
        stamp = now()
        self.db.conn.executemany(
            "INSERT INTO refused_ticks (return_hash, student_no, step, value, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", [(digest_hex, *r, stamp) for r in rows])

    def add_conflicts(self, digest_hex: str, rows: list[tuple[str, str, str, str, str, str]]) -> None:
        """Keep conflicts (学号, step, issued, returned, current, returned 备注) of one return; in a transaction."""
        stamp = now()
        self.db.conn.executemany(
            "INSERT INTO conflicts (return_hash, student_no, step, baseline, returned, current, remark, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(digest_hex, *r, stamp) for r in rows])

    def refused_of(self, digest_hex: str) -> list[tuple[str, str, str, str]]:
        """The refused ticks (学号, step, value, reason) kept for one return, in order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT student_no, step, value, reason FROM refused_ticks WHERE return_hash = ? ORDER BY id",
            [digest_hex])]

    def conflicts_of(self, digest_hex: str) -> list[tuple[str, str, str, str, str]]:
        """The conflicts (学号, step, issued, returned, current) kept for one return, in order."""
        return [tuple(r) for r in self.db.execute(
            "SELECT student_no, step, baseline, returned, current FROM conflicts WHERE return_hash = ? ORDER BY id",
            [digest_hex])]

    # -- what the reports show of the returns ------------------------------------------------
    def office_returns(self) -> list[OfficeReturn]:
        """Per issued checkpoint and scope: the latest generation and issue time, and the last merged return."""
        return [OfficeReturn(*r) for r in self.db.execute(
            "SELECT w.checkpoint, w.scope, max(w.generation) AS generation, max(w.issued_at) AS issued_at, "
            "(SELECT max(r.updated_at) FROM returns r JOIN workbooks w2 ON w2.id = r.workbook_id "
            " WHERE w2.checkpoint = w.checkpoint AND w2.scope = w.scope AND r.outcome = 'merged') AS returned_at, "
            + ", ".join(f"coalesce((SELECT {value} FROM returns r JOIN workbooks w2 ON w2.id = r.workbook_id "
                        " WHERE w2.checkpoint = w.checkpoint AND w2.scope = w.scope AND r.outcome = 'merged' "
                        " ORDER BY r.updated_at DESC LIMIT 1), '')"
                        for value in ("r.channel || ' ' || r.sender", "json_extract(r.detail, '$.operator')",
                                      "json_extract(r.detail, '$.program')"))
            + " FROM workbooks w GROUP BY w.checkpoint, w.scope ORDER BY w.checkpoint, w.scope")]

    def merged_summary(self) -> tuple[int, str | None]:
        """How many returns were merged, and when the last one was."""
        count, last = self.db.execute(
            "SELECT count(*), max(updated_at) FROM returns WHERE outcome = 'merged'").fetchone()
        return int(count), last


class WaiverRecords(AuditChain):
    """Lifted restrictions (解除限制), each its own record, audited (a Store mixin)."""

    def active_waivers(self, student_no: str | None = None) -> list[WaiverRow]:
        """Lifted restrictions still in force, optionally of one student, each with the student and the step's
        stored status — one query, however many there are."""
        sql = ("SELECT w.id, w.student_no, w.step, w.reason, w.evidence, w.operator, w.created_at, w.restored_at, "
               "w.restored_by, s.name, coalesce(s.college, ''), coalesce(s.class_name, ''), "
               "coalesce(st.status, '') AS stored FROM waivers w "
               "LEFT JOIN students s ON s.student_no = w.student_no "
               "LEFT JOIN statuses st ON st.student_no = w.student_no AND st.step = w.step "
               "WHERE w.restored_at IS NULL")
        args: list[str] = []
        if student_no is not None:
            sql += " AND w.student_no = ?"
            args.append(student_no)
        return [WaiverRow(*r) for r in self.db.execute(sql + " ORDER BY w.created_at, w.id", args)]

    def add_waiver(self, student_no: str, step: str, reason: str, operator: str, evidence: str = "",
                   source: str = "cli", source_hash: str = "") -> None:
        """Record a lifted restriction with its audit event; call inside a transaction."""
        stamp = now()
        self.db.execute(
            "INSERT INTO waivers (student_no, step, reason, evidence, operator, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [student_no, step, reason, evidence, operator, stamp],
        )
        self.append_audit([Event(
            "waiver", student_no=student_no, step=step, old="限制已开启", new="限制已关闭", decision="lifted",
            source=source, source_hash=source_hash, operator=operator,
            detail=reason if not evidence else f"{reason}（证明：{evidence}）", at=stamp)])

    def restore_waiver(self, student_no: str, step: str, operator: str, source: str = "cli",
                       source_hash: str = "") -> bool:
        """Restore a lifted restriction; False when none was in force. Call inside a transaction."""
        stamp = now()
        cursor = self.db.execute(
            "UPDATE waivers SET restored_at = ?, restored_by = ? "
            "WHERE student_no = ? AND step = ? AND restored_at IS NULL",
            [stamp, operator, student_no, step],
        )
        if cursor.rowcount == 0:
            return False
        self.append_audit([Event(
            "waiver", student_no=student_no, step=step, old="限制已关闭", new="限制已开启", decision="restored",
            source=source, source_hash=source_hash, operator=operator, at=stamp)])
        return True
