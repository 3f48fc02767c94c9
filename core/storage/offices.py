"""The office directory (通讯录): which office receives which workbooks, and through which channel.

An office is one checkpoint instance: a whole-school checkpoint (宿管中心离校点) or one college's instance of a
per-college checkpoint (机电工程学院领取证件). Its key is ``checkpoint|college`` (college empty for whole-school
offices). A directory row gives it a contact, e-mail addresses and/or a shared-folder path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lixiao.core.manual.identity import clean_text
from lixiao.core.manual.model import Checkpoint

from .chain import AuditChain, Event, now

DIRECTORY_HEADERS = ("离校点", "联系人", "电子邮箱", "共享文件夹")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
_SEPARATORS = re.compile(r"[;,，；、\s]+")
MAX_EMAILS = 5
REPLIED = ("taken", "answered", "latest", "refused")  # mail_messages states of a message that was answered


def office_key(checkpoint: str, college: str = "") -> str:
    """The directory key of a checkpoint instance."""
    return f"{checkpoint}|{college}"


@dataclass(frozen=True, slots=True)
class OfficeInstance:
    """One office the flow and the roster make: a checkpoint, the college of a per-college one, its title."""

    checkpoint: Checkpoint
    college: str
    title: str

    @property
    def key(self) -> str:
        """The directory key."""
        return office_key(self.checkpoint.code, self.college)


@dataclass(frozen=True, slots=True)
class Office:
    """One directory entry."""

    checkpoint: str
    college: str
    title: str
    contact: str = ""
    emails: tuple[str, ...] = ()
    share: str = ""  # a folder path ('' for none); relative paths are relative to [delivery] share_root

    @property
    def key(self) -> str:
        """The directory key."""
        return office_key(self.checkpoint, self.college)

    def as_json(self) -> dict[str, object]:
        """The entry as the audit and ``offices show --json`` give it."""
        return {"office": self.key, "title": self.title, "contact": self.contact, "emails": list(self.emails),
                "share": self.share}


def office_instances(checkpoints: Iterable[Checkpoint], colleges: Iterable[str]) -> list[OfficeInstance]:
    """Every office of these checkpoints (issuance.issuable: those that get workbooks), per college (of the
    roster: Store.colleges) where a checkpoint is per college."""
    colleges = sorted({c for c in colleges if c})
    found = []
    for checkpoint in checkpoints:
        if checkpoint.per_college:
            found += [OfficeInstance(checkpoint, college, checkpoint.title_for(college)) for college in colleges]
        else:
            found.append(OfficeInstance(checkpoint, "", checkpoint.name))
    return found


@dataclass
class DirectoryParse:
    """The entries of a 通讯录 file, and its refused rows (by row number) and warnings."""

    entries: list[Office] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def split_emails(text: str) -> tuple[list[str], list[str]]:
    """The addresses in a cell (separated by ; , ， ； 、 or spaces) and those that are not addresses."""
    parts = [p for p in _SEPARATORS.split(clean_text(text)) if p]
    good = [p.lower() for p in parts if _EMAIL.match(p)]
    return list(dict.fromkeys(good)), [p for p in parts if not _EMAIL.match(p)]


def parse_directory(headers: list[str], rows: Iterable[tuple[int, Mapping[str, object]]],
                    instances: list[OfficeInstance]) -> DirectoryParse:
    """Validate a 通讯录: each row names an office (its title, e.g. 机电工程学院领取证件, or a whole-school
    checkpoint's code), and gives e-mail addresses and/or a shared folder."""
    result = DirectoryParse()
    if "离校点" not in headers or not ({"电子邮箱", "共享文件夹"} & set(headers)):
        result.problems.append("通讯录缺少表头：需要 离校点，以及 电子邮箱 或 共享文件夹"
                               f"（可用：{'、'.join(DIRECTORY_HEADERS)}）")
        return result
    by_name: dict[str, OfficeInstance] = {}
    for known in instances:
        by_name[known.title] = known
        if not known.college:
            by_name.setdefault(known.checkpoint.code, known)
            by_name.setdefault(known.checkpoint.name, known)
    seen: dict[str, int] = {}
    for number, cells in rows:
        name = clean_text(str(cells.get("离校点") or ""))
        contact = clean_text(str(cells.get("联系人") or ""))
        emails, bad = split_emails(str(cells.get("电子邮箱") or ""))
        share = clean_text(str(cells.get("共享文件夹") or ""))
        reasons = []
        instance = by_name.get(name)
        if not name:
            reasons.append("离校点为空")
        elif instance is None:
            example = instances[0].title if instances else "宿管中心离校点"
            reasons.append(f"没有离校点“{name}”（应写工作簿上的名称，如 {example}；"
                           "lixiao offices template 生成的模板列出了全部离校点）")
        if bad:
            reasons.append(f"“{'、'.join(bad)}”不是电子邮箱地址")
        if len(emails) > MAX_EMAILS:
            reasons.append(f"电子邮箱最多 {MAX_EMAILS} 个")
        if share and any(ord(c) < 32 for c in share):
            reasons.append("共享文件夹路径含控制字符")
        if instance is not None and instance.key in seen:
            reasons.append(f"与第 {seen[instance.key]} 行是同一个离校点")
        if reasons:
            result.problems.append(f"第 {number} 行：{'；'.join(reasons)}")
            continue
        assert instance is not None
        seen[instance.key] = number
        if not emails and not share:
            result.warnings.append(f"第 {number} 行（{instance.title}）：没有电子邮箱也没有共享文件夹，"
                                   "lixiao send 无法投递，工作簿仍在 outbox/ 里")
        result.entries.append(Office(instance.checkpoint.code, instance.college, instance.title, contact,
                                     tuple(emails), share))
    return result


_OFFICE_COLUMNS = "checkpoint, college, title, contact, emails, share"


def _office(row: tuple[str, str, str, str, str, str]) -> Office:
    checkpoint, college, title, contact, emails, share = row
    return Office(checkpoint, college, title, contact, tuple(e for e in emails.split(" ") if e), share)


class OfficeDirectory(AuditChain):
    """The directory's part of the Store (a mixin)."""

    def offices(self) -> list[Office]:
        """The directory, ordered by checkpoint and college."""
        cursor = self.db.execute(f"SELECT {_OFFICE_COLUMNS} FROM offices ORDER BY checkpoint, college")
        return [_office(row) for row in cursor]

    def office(self, key: str) -> Office | None:
        """One entry, or None."""
        row = self.db.execute(f"SELECT {_OFFICE_COLUMNS} FROM offices WHERE office = ?", [key]).fetchone()
        return _office(row) if row else None

    def office_by_email(self, address: str) -> list[Office]:
        """The offices an address belongs to (an address may serve several offices)."""
        address = address.strip().lower()
        return [o for o in self.offices() if address in o.emails]

    def set_offices(self, entries: Iterable[Office], source: str, operator: str) -> tuple[int, int]:
        """Add or change directory entries (an entry not named stays); each change is an audit event.
        Returns (added, changed); inside a transaction."""
        added = changed = 0
        events = []
        stamp = now()
        for entry in entries:
            before = self.office(entry.key)
            if before == entry:
                continue
            new = json.dumps(entry.as_json(), ensure_ascii=False, sort_keys=True)
            old = json.dumps(before.as_json(), ensure_ascii=False, sort_keys=True) if before else ""
            self.db.execute(
                "INSERT INTO offices (office, checkpoint, college, title, contact, emails, share, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (office) DO UPDATE SET title = excluded.title, "
                "contact = excluded.contact, emails = excluded.emails, share = excluded.share, "
                "updated_at = excluded.updated_at",
                [entry.key, entry.checkpoint, entry.college, entry.title, entry.contact, " ".join(entry.emails),
                 entry.share, stamp])
            events.append(Event("office", step=entry.key, old=old, new=new, decision="changed" if before else "added",
                                source=source, operator=operator))
            added, changed = (added, changed + 1) if before else (added + 1, changed)
        if events:
            self.append_audit(events)
        return added, changed

    def mail_message_done(self, key: str) -> bool:
        """True when this message was already taken from the mailbox (``key``: its Message-ID with its
        attachments' content hashes, so a reused Message-ID with other attachments is not this message)."""
        return self.db.execute("SELECT 1 FROM mail_messages WHERE message_key = ?", [key]).fetchone() is not None

    def replies_since(self, sender: str, since: str) -> int:
        """How many messages of ``sender`` taken since ``since`` (ISO time) were answered (REPLIED states)."""
        marks = ", ".join("?" * len(REPLIED))
        return int(self.db.execute(f"SELECT count(*) FROM mail_messages WHERE sender = ? AND taken_at >= ? "
                                   f"AND state IN ({marks})", [sender, since, *REPLIED]).fetchone()[0])

    def set_mail_message(self, key: str, sender: str, subject: str, sent_at: str, state: str, detail: str) -> None:
        """Remember a message taken from the mailbox (after its attachments are decided and its reply sent)."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO mail_messages (message_key, sender, subject, sent_at, taken_at, state, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_key) DO UPDATE SET state = excluded.state, "
                "detail = excluded.detail", [key, sender, subject, sent_at, now(), state, detail])
