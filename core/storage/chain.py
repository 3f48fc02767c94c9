"""The audit chain: appending hash-chained events, the head anchored outside the database, and the replay
that rebuilds statuses, waivers and ledger from the chain (what `lixiao verify` compares and repairs)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import chainhash
from .chainhash import AUDIT_FIELDS, audit_hash, chain_text
from .differences import Differences, StatusFields
from .files import write_small

if TYPE_CHECKING:
    import sqlite_utils

GENESIS = "0" * 64
REPAIR_LISTED = 1000  # how many restored rows a repair event lists
ANCHOR = "audit.head"  # beside store.db: the chain head after the last commit ("seq hash")


def now() -> str:
    """The local time as an ISO string to the second, the store's timestamp format."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Event:
    """One audit event to append: every field is text; ``at`` empty means now."""

    kind: str
    student_no: str = ""
    step: str = ""
    old: str = ""
    new: str = ""
    decision: str = ""
    source: str = ""
    source_hash: str = ""
    operator: str = ""
    detail: str = ""
    at: str = ""

    def fields(self) -> tuple[str, ...]:
        """The hashed fields, in chain order."""
        return (self.at, self.kind, self.student_no, self.step, self.old, self.new, self.decision, self.source,
                self.source_hash, self.operator, self.detail)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One stored audit event, as the chain holds it."""

    seq: int
    at: str
    kind: str
    student_no: str
    step: str
    old: str
    new: str
    decision: str
    source: str
    source_hash: str
    operator: str
    detail: str
    prev_hash: str
    hash: str


AUDIT_COLUMNS = ", ".join(("seq", *AUDIT_FIELDS, "prev_hash", "hash"))  # AuditEvent's fields, in order


@dataclass
class Replay:
    """The state the audit chain describes, rebuilt by streaming it once."""

    events: int = 0
    # (seq, 0 link / 1 hash, line) found so far, and the helper still hashing beside (chainhash), if any
    problems: list[tuple[int, int, str]] = field(default_factory=list)
    beside: Callable[[], list[int]] | None = None
    # (学号, step) → (status, remark, version, updated_at, source, operator), as the statuses table holds it
    statuses: dict[tuple[str, str], StatusFields] = field(default_factory=dict)
    # (学号, step) → (reason, evidence, operator, created_at) of the waivers in force
    waivers: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)
    # content hash → (state, outcome, first file name)
    ledger: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    # (content hash, decision) of every "return" event: explains ledger rows written before schema 4
    returns: set[tuple[str, str]] = field(default_factory=set)

    @property
    def chain(self) -> list[str]:
        """Breaks in the chain's links and hashes, in chain order (waits for the helper's answer, if any)."""
        if self.beside is not None:
            finish, self.beside = self.beside, None
            self.problems += [(seq, 1, _TAMPERED.format(seq=seq)) for seq in finish()]
        return [line for _seq, _kind, line in sorted(self.problems)]


_TAMPERED = "审计记录 {seq} 的内容与哈希不符（记录被改动）"
_EVIDENCE = re.compile(r"^(.*)（证明：(.*)）$", re.S)


def _split_evidence(detail: str) -> tuple[str, str]:
    """A waiver event's detail back into (reason, evidence) — add_waiver's format."""
    found = _EVIDENCE.match(detail)
    return (found.group(1), found.group(2)) if found else (detail, "")


class AuditChain:
    """The chain's part of the Store (a mixin): the store provides the connection, its path, transactions and
    status writes."""

    db: sqlite_utils.Database
    path: Path
    recording: list[list[str]] | None = None  # when a list: every appended row (fields, prev_hash, hash) too

    def transaction(self) -> AbstractContextManager[object]:
        """A write transaction (provided by Store)."""
        raise NotImplementedError

    def events_where(self, column: str, value: str) -> list[AuditEvent]:
        """Every audit event whose ``column`` (student_no or source_hash, both indexed) is ``value``, oldest first."""
        if column not in ("student_no", "source_hash"):
            raise ValueError(column)
        return [AuditEvent(*row) for row in self.db.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {column} = ? ORDER BY seq", [value])]

    def audit_count(self) -> int:
        """How many audit events the chain holds."""
        return int(self.db.execute("SELECT count(*) FROM audit").fetchone()[0])

    def head(self) -> tuple[int, str]:
        """The newest audit event's (seq, hash); (0, GENESIS) for an empty chain."""
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def anchor(self) -> tuple[int, str] | None:
        """The chain head written after the last commit (``audit.head``), or None when there is none yet."""
        try:
            seq, digest = self.path.with_name(ANCHOR).read_text("ascii").split()
            return int(seq), digest
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError):
            return (-1, "")

    def anchor_problem(self) -> str:
        """Why the chain disagrees with ``audit.head`` ("" when it does not)."""
        return self.anchor_disagreement(self.anchor())

    def anchor_disagreement(self, anchor: tuple[int, str] | None) -> str:
        """Why the chain disagrees with an anchor read earlier ("" when it does not): the database's chain must
        reach the anchor's seq with the anchor's hash (it may be ahead: a crash between commit and anchor).
        Read the anchor before a snapshot begins, as another process writes it after its commit."""
        if anchor is None:
            return ""
        seq, digest = anchor
        if seq < 0:
            return f"审计链尾部锚点 {ANCHOR} 无法读取（文件被改动）"
        head_seq, _ = self.head()
        row = self.db.execute("SELECT hash FROM audit WHERE seq = ?", [seq]).fetchone()
        if seq == 0 and digest == GENESIS:
            return ""
        if head_seq < seq or row is None or row[0] != digest:
            return (f"审计链尾部丢失或被改动：锚点 {ANCHOR} 记录到第 {seq} 条，数据库审计链只到第 {head_seq} 条"
                    + ("" if head_seq < seq or row is None else "且该条哈希不同"))
        return ""

    def write_anchor(self, head: tuple[int, str] | None = None, force: bool = False) -> None:
        """Write the chain head to ``audit.head`` (temp file, fsync, rename). An anchor the chain disagrees
        with is evidence of a lost tail and is kept, unless ``force`` (verify --repair accepting the loss)."""
        if not force and self.anchor_problem():
            return
        seq, digest = head or self.head()
        write_small(self.path.with_name(ANCHOR), f"{seq} {digest}\n", durable=True)

    def append_audit(self, events: Iterable[Event]) -> int:
        """Append events to the hash-chained audit log; call inside a transaction."""
        row = self.db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        stamp = now()
        rows = []
        for event in events:
            fields = event.fields()
            if not fields[0]:
                fields = (stamp, *fields[1:])
            digest = audit_hash(prev, fields)
            rows.append([*fields, prev, digest])
            prev = digest
        self.db.conn.executemany(
            f"INSERT INTO audit ({', '.join(AUDIT_FIELDS)}, prev_hash, hash) "
            f"VALUES ({', '.join('?' * (len(AUDIT_FIELDS) + 2))})",
            rows,
        )
        if self.recording is not None:
            self.recording.extend(rows)
        return len(rows)

    def audit_problems(self) -> list[str]:
        """Breaks in the audit hash chain (empty when the chain verifies)."""
        return self.replay().chain

    def replay(self, progress: Callable[[int, int], None] | None = None) -> Replay:
        """Stream the audit chain once: check every link and rebuild the statuses, the waivers in force and the
        ledger it describes. ``progress(done, total)`` is called every 50,000 events. A long chain's hashes are
        checked beside the replay by a helper process (chainhash), or here when the helper gives no answer."""
        result = Replay()
        total, upto = self.db.execute("SELECT count(*), coalesce(max(seq), 0) FROM audit").fetchone()
        # the helper hashes the events up to ``beside``, the replay (which has the state to rebuild too) the rest
        beside = int(upto * chainhash.BESIDE_SHARE) if total >= chainhash.BESIDE_FROM else 0
        helper = chainhash.start(self.path, beside) if beside else None
        beside = beside if helper is not None else 0
        hashed_beside = 0
        statuses, waivers, ledger, returns = result.statuses, result.waivers, result.ledger, result.returns
        prev = GENESIS
        problems = result.problems
        dumps, sha256 = chain_text, hashlib.sha256
        cursor = self.db.execute(f"SELECT seq, {', '.join(AUDIT_FIELDS)}, prev_hash, hash FROM audit "
                                 "WHERE seq <= ? ORDER BY seq", [upto])
        done = 0
        for seq, at, kind, no, step, old, new, decision, source, source_hash, operator, detail, prev_hash, digest \
                in cursor:
            done += 1
            if prev_hash != prev:
                problems.append((seq, 0, f"审计记录 {seq} 的前一哈希不连续（记录被删除或插入）"))
            if seq <= beside:
                hashed_beside += 1
            elif sha256(dumps((prev_hash, at, kind, no, step, old, new, decision, source, source_hash, operator,
                               detail)).encode("utf-8")).hexdigest() != digest:
                problems.append((seq, 1, _TAMPERED.format(seq=seq)))
            prev = digest
            if kind == "status":
                key = (no, step)
                version = statuses[key][2] + 1 if key in statuses else 1
                statuses[key] = (new, detail, version, at, source, operator)
            elif kind == "waiver":
                if decision == "lifted":
                    reason, evidence = _split_evidence(detail)
                    waivers[(no, step)] = (reason, evidence, operator, at)
                elif decision == "restored":
                    waivers.pop((no, step), None)
            elif kind == "ledger":
                state, _, outcome = new.partition("/")
                first = ledger[source_hash][2] if source_hash in ledger else detail
                ledger[source_hash] = (state, outcome or None, first)
            elif kind == "return":
                returns.add((source_hash, decision))
            if progress is not None and done % 50_000 == 0:
                progress(done, total)
        if helper is not None:  # its answer is waited for when the chain's problems are first asked for

            def finish(helper: subprocess.Popen[bytes] = helper, hashed: int = hashed_beside,
                       upto: int = beside) -> list[int]:
                bad = chainhash.finish(helper, hashed)
                return chainhash.bad_hashes(self.path, upto)[1] if bad is None else bad  # no answer: hashed here

            result.beside = finish
        result.events = done
        if progress is not None:
            progress(done, total)
        return result

    def replay_differences(self, replay: Replay, statuses: dict[str, dict[str, str]] | None = None) -> Differences:
        """Where the statuses, waivers in force and ledger disagree with the replayed chain; ``statuses``, when
        given, receives every stored status (学号 → step → status) on the way (the status lines' check)."""
        found = Differences()
        replayed = replay.statuses
        seen = 0
        for row in self.db.execute(
                "SELECT student_no, step, status, remark, version, updated_at, source, operator FROM statuses"):
            key = row[:2]
            if statuses is not None:
                statuses.setdefault(row[0], {})[row[1]] = row[2]
            want = replayed.get(key)
            if want is None:
                found.status_extra.append(key)
                continue
            seen += 1
            stored: StatusFields = row[2:]
            if want != stored:
                found.status_changed.append((key, stored, want))
        if seen != len(replayed):
            table = {(r[0], r[1]) for r in self.db.execute("SELECT student_no, step FROM statuses")}
            found.status_missing = [key for key in replayed if key not in table]
        waived = {(r[0], r[1]): tuple(r[2:]) for r in self.db.execute(
            "SELECT student_no, step, reason, evidence, operator, created_at FROM waivers WHERE restored_at IS NULL")}
        # A waiver changed behind the chain's back is both: its row goes, the replayed one comes back.
        found.waiver_extra = [key for key, row in waived.items() if replay.waivers.get(key) != row]
        found.waiver_missing = [key for key, row in replay.waivers.items() if waived.get(key) != row]
        ledger = {r[0]: (r[1], r[2], r[3])
                  for r in self.db.execute("SELECT hash, file_name, state, outcome FROM returns")}
        for digest, (name, state, outcome) in ledger.items():
            replayed_row = replay.ledger.get(digest)
            if replayed_row is None:
                # Rows written before schema 4 have no ledger events: their "return" event explains them.
                if outcome is None or (digest, outcome) not in replay.returns:
                    found.ledger_extra.append((digest, name))
            elif replayed_row[:2] != (state, outcome):
                found.ledger_changed.append((digest, name))
        found.ledger_missing = [(digest, row[2]) for digest, row in replay.ledger.items() if digest not in ledger]
        return found

    def replay_problems(self, replay: Replay) -> list[str]:
        """The disagreements with the replayed chain as Chinese problem lines (a few examples, counts)."""
        return self.replay_differences(replay).lines()

    def repair_from_replay(self, replay: Replay, operator: str) -> list[str]:
        """Rewrite statuses, waivers in force and ledger rows that disagree with the replayed chain back to the
        replayed values, with one audit event "repair" listing them; returns what was restored."""
        found = self.replay_differences(replay)
        restored: list[str] = []
        if not found.any():
            return restored
        stamp = now()
        with self.transaction():
            cells = [key for key, _, _ in found.status_changed] + found.status_missing
            self.db.conn.executemany(
                "INSERT INTO statuses (student_no, step, status, remark, version, updated_at, source, operator) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (student_no, step) DO UPDATE SET "
                "status = excluded.status, remark = excluded.remark, version = excluded.version, "
                "updated_at = excluded.updated_at, source = excluded.source, operator = excluded.operator",
                [(*key, *replay.statuses[key]) for key in cells])
            self.db.conn.executemany("DELETE FROM statuses WHERE student_no = ? AND step = ?", found.status_extra)
            restored += [f"状态 {no} {step} → {replay.statuses[(no, step)][0]}" for no, step in cells]
            restored += [f"删除无审计记录的状态 {no} {step}" for no, step in found.status_extra]
            self.db.conn.executemany("DELETE FROM waivers WHERE student_no = ? AND step = ? AND restored_at IS NULL",
                                     found.waiver_extra)
            restored += [f"撤销无审计记录的解除限制 {no} {step}" for no, step in found.waiver_extra]
            self.db.conn.executemany(
                "INSERT INTO waivers (student_no, step, reason, evidence, operator, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", [(*key, *replay.waivers[key]) for key in found.waiver_missing])
            restored += [f"解除限制 {no} {step}" for no, step in found.waiver_missing]
            self.db.conn.executemany("DELETE FROM returns WHERE hash = ?", [(d,) for d, _ in found.ledger_extra])
            restored += [f"删除无审计记录的台账“{name}”（{digest[:12]}）" for digest, name in found.ledger_extra]
            for digest, name in found.ledger_missing + found.ledger_changed:
                state, outcome, first = replay.ledger[digest]
                self.db.execute(
                    "INSERT INTO returns (hash, file_name, state, outcome, received_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET state = excluded.state, "
                    "outcome = excluded.outcome, updated_at = excluded.updated_at",
                    [digest, first, state, outcome, stamp, stamp])
                restored.append(f"台账“{name}”（{digest[:12]}）→ {state}/{outcome or ''}")
            shown = restored[:REPAIR_LISTED] + ([f"等共 {len(restored)} 处"] if len(restored) > REPAIR_LISTED else [])
            self.append_audit([Event("repair", decision="restored", source="verify --repair", operator=operator,
                                     detail="按审计记录恢复：" + "；".join(shown), at=stamp)])
        return restored
