"""What a merge trusts besides statuses, waivers and the ledger, held against the audit chain: the students (each
roster import's "student" events), the issued workbooks (each "workbook" event holds a hash of its row: baseline,
students hash, path …) and the lenders' loan confirmations ("loan" events); and the repair of students and
confirmations from those events (a workbook row cannot be rebuilt from its hash: only a backup restores it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

from lixiao.core.manual.identity import mask_id_card
from lixiao.core.manual.model import Student

from .chain import AuditChain
from .differences import EXAMPLES

ID_KEY = "id_card"  # a student event's detail: {"id_card": the whole 身份证号} (events since issue 24)
_FIELDS = {f.name for f in fields(Student)}


def row_digest(values: Sequence[object]) -> str:
    """The hash a "workbook" event holds of its row (every column of WorkbookRow, in order)."""
    return hashlib.sha256(json.dumps(list(values), ensure_ascii=False).encode("utf-8")).hexdigest()


def student_detail(id_card: str, changed: Iterable[str]) -> str:
    """A student event's detail where its 身份证号 ``changed``: the whole number, so that a deleted student can be
    restored (the event's ``new`` masks it)."""
    return json.dumps({ID_KEY: id_card}, ensure_ascii=False) if id_card and ID_KEY in changed else ""


def _as_field(value: object) -> object:
    """An event's JSON value as the Student field holds it (lenders: a tuple)."""
    return tuple(value) if isinstance(value, list) else value


@dataclass
class TrustedReplay:
    """Students, workbooks and loan confirmations as the chain describes them."""

    # 学号 → Student field → value, and when the newest event about it was written
    students: dict[str, dict[str, object]] = field(default_factory=dict)
    student_at: dict[str, str] = field(default_factory=dict)
    whole_id: set[str] = field(default_factory=set)  # 学号 whose chain holds the whole 身份证号
    workbooks: dict[str, str] = field(default_factory=dict)  # id → row digest ("" before issue 24)
    loans: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)  # → (source, operator, at)


@dataclass
class TrustedDifferences:
    """Rows of students, workbooks and loan_confirmations that disagree with the chain."""

    student_changed: list[str] = field(default_factory=list)
    student_missing: list[str] = field(default_factory=list)
    student_extra: list[str] = field(default_factory=list)
    workbook_changed: list[str] = field(default_factory=list)
    workbook_missing: list[str] = field(default_factory=list)
    workbook_extra: list[str] = field(default_factory=list)
    loan_missing: list[tuple[str, str]] = field(default_factory=list)
    loan_extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def workbooks(self) -> bool:
        """Whether a workbook row disagrees (not repairable in place)."""
        return bool(self.workbook_changed or self.workbook_missing or self.workbook_extra)

    def lines(self) -> list[str]:
        """One Chinese problem line per kind of disagreement, naming the first few."""
        fix = "；运行 lixiao verify --repair 可按审计记录恢复"
        backup = "；工作簿记录无法按审计记录重建，请用 lixiao backup 的备份恢复"

        def some(keys: Sequence[str | tuple[str, str]]) -> str:
            return "、".join(k if isinstance(k, str) else " ".join(k) for k in keys[:EXAMPLES])
        found: list[tuple[Sequence[str | tuple[str, str]], str]] = [
            (self.student_changed, "学生名单中 {} 名学生与审计记录不符（名单被改动），如 {}" + fix),
            (self.student_missing, "学生名单缺少 {} 名审计记录中的学生（名单行被删除），如 {}" + fix),
            (self.student_extra, "学生名单中 {} 名学生没有审计记录（名单行被伪造），如 {}" + fix),
            (self.workbook_changed, "已签发工作簿表中 {} 本与审计记录不符（基线、范围或路径被改动），如 {}" + backup),
            (self.workbook_missing, "已签发工作簿表缺少 {} 本审计记录中的工作簿（记录被删除），如 {}" + backup),
            (self.workbook_extra, "已签发工作簿表中 {} 本没有审计记录（记录被伪造），如 {}" + backup),
            (self.loan_missing, "贷款确认表缺少 {} 条审计记录中的确认（记录被删除），如 {}" + fix),
            (self.loan_extra, "贷款确认表中 {} 条确认与审计记录不符（记录被伪造或改动），如 {}" + fix),
        ]
        return [text.format(len(keys), some(keys)) for keys, text in found if keys]


class TrustedTables(AuditChain):
    """The students, workbooks and loan confirmations held against the chain (a Store mixin; the store provides
    its students)."""

    def students(self, among: Iterable[str] | None = None) -> list[Student]:
        """All students (provided by Store)."""
        raise NotImplementedError

    def student(self, student_no: str) -> Student | None:
        """One student (provided by Store)."""
        raise NotImplementedError

    def upsert_students(self, students: list[Student], source: str, operator: str = "") -> dict[str, int]:
        """Insert or update students with their events (provided by Store)."""
        raise NotImplementedError

    def trusted_replay(self) -> TrustedReplay:
        """The chain's student, workbook and loan events, replayed (the chain's links are checked by replay())."""
        result = TrustedReplay()
        cursor = self.db.execute("SELECT at, kind, student_no, new, decision, source, source_hash, operator, detail "
                                 "FROM audit WHERE kind IN ('student', 'workbook', 'loan') ORDER BY seq")
        for at, kind, no, new, decision, source, source_hash, operator, detail in cursor:
            if kind == "workbook" and decision == "issued":
                result.workbooks[new] = source_hash
            elif kind == "loan" and decision == "confirmed":
                result.loans[(no, new)] = (source, operator, at)
            elif kind == "student":
                _replay_student(result, no, new, detail, at)
        return result

    def trusted_differences(self, replay: TrustedReplay) -> TrustedDifferences:
        """Where students, workbooks and loan confirmations disagree with the replayed chain."""
        found = TrustedDifferences()
        seen = set()
        for student in self.students():
            no = student.student_no
            seen.add(no)
            want = replay.students.get(no)
            if want is None:
                found.student_extra.append(no)
            elif not _student_agrees({f: getattr(student, f) for f in _FIELDS}, want, no in replay.whole_id):
                found.student_changed.append(no)
        found.student_missing = [no for no in replay.students if no not in seen]
        # WorkbookRow's columns, in order (registry.py): the digest covers all of them
        table = {str(row[0]): row_digest(row) for row in self.db.execute(
            "SELECT id, checkpoint, scope, generation, issued_at, students_hash, baseline, path, office, readiness "
            "FROM workbooks")}
        found.workbook_extra = [key for key in table if key not in replay.workbooks]
        found.workbook_missing = [key for key in replay.workbooks if key not in table]
        found.workbook_changed = [key for key, digest in replay.workbooks.items()
                                  if digest and key in table and table[key] != digest]
        loans = {(r[0], r[1]): (r[2], r[3], r[4]) for r in self.db.execute(
            "SELECT student_no, lender, source, operator, confirmed_at FROM loan_confirmations")}
        found.loan_extra = [key for key, row in loans.items() if replay.loans.get(key) != row]
        found.loan_missing = [key for key, row in replay.loans.items() if loans.get(key) != row]
        return found

    def repair_trusted(self, replay: TrustedReplay, found: TrustedDifferences, operator: str) -> list[str]:
        """Restore students and loan confirmations that disagree with the chain (call inside a transaction; students
        no event explains are dropped by drop_unaudited_students, after their statuses): each
        restored student is a "student" event (source verify --repair) so that the chain describes the table again.
        Returns what was restored; a 身份证号 the chain holds only masked (imports before issue 24) is left
        empty and named."""
        restored: list[str] = []
        back = []
        for no in found.student_changed + found.student_missing:
            row = {name: value for name, value in replay.students[no].items() if name in _FIELDS}
            if no not in replay.whole_id:  # the chain holds it masked: keep the table's when it matches
                current = self.student(no)
                keep = current is not None and _masked(current.id_card) == row.get("id_card", "")
                row["id_card"] = current.id_card if current is not None and keep else ""
            back.append(Student(**{"name": "", **row, "student_no": no}))  # type: ignore[arg-type]
            lost = not row.get("id_card") and bool(replay.students[no].get("id_card"))
            restored.append(f"学生 {no}" + ("（审计记录中只有脱敏的身份证号，无法恢复，请重新导入名单）"
                                           if lost else ""))
        if back:  # each restored student is a "student" event: the chain describes the table again
            self.upsert_students(back, source="verify --repair", operator=operator)
        self.db.conn.executemany("DELETE FROM loan_confirmations WHERE student_no = ? AND lender = ?", found.loan_extra)
        self.db.conn.executemany(
            "INSERT INTO loan_confirmations (student_no, lender, source, operator, confirmed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(*key, *replay.loans[key]) for key in found.loan_missing])
        restored += [f"撤销无审计记录的贷款确认 {no} {lender}" for no, lender in found.loan_extra if
                     (no, lender) not in found.loan_missing]
        restored += [f"贷款确认 {no} {lender}" for no, lender in found.loan_missing]
        return restored

    def drop_unaudited_students(self, found: TrustedDifferences) -> list[str]:
        """Delete the students no event explains (after their unaudited statuses went: call inside a transaction)."""
        self.db.conn.executemany("DELETE FROM students WHERE student_no = ?", [(no,) for no in found.student_extra])
        return [f"删除无审计记录的学生 {no}" for no in found.student_extra]


def _masked(id_card: str) -> str:
    return mask_id_card(id_card) if id_card else ""


def _replay_student(result: TrustedReplay, no: str, new: str, detail: str, at: str) -> None:
    """One "student" event: its changed fields over what the chain said before."""
    try:
        changed = json.loads(new) if new else {}
        extra = json.loads(detail) if detail else {}
    except ValueError:
        changed, extra = {}, {}
    row = result.students.setdefault(no, {})
    for name, value in changed.items() if isinstance(changed, dict) else ():
        if name == "withheld":  # before 暂缓发证 named the certificate: withheld meant both (schema.WITHHELD_CODES)
            row["withheld_degree"] = row["withheld_diploma"] = bool(value)
        else:
            row[name] = _as_field(value)
    whole = extra.get(ID_KEY) if isinstance(extra, dict) else None
    if isinstance(whole, str):
        row["id_card"] = whole
        result.whole_id.add(no)
    elif "id_card" in (changed if isinstance(changed, dict) else {}):
        result.whole_id.discard(no)
    result.student_at[no] = at


def _student_agrees(table: dict[str, object], want: dict[str, object], whole_id: bool) -> bool:
    """A students row against the chain: every field the chain names, the 身份证号 masked when the chain holds it
    masked (imports before issue 24)."""
    for name, value in want.items():
        if name not in table:
            continue  # a field the roster no longer has (before the model changed)
        have = table.get(name)
        if name == "id_card" and not whole_id:
            have = _masked(str(have or ""))
        if have != value:
            return False
    return True
