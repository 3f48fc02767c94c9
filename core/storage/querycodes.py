"""Each student's 查询码: the random secret of the page safe to publish, handed out on slips.

A code is 10 characters of Crockford's base32 (0-9 and A-Z without I, L, O, U: 50 bits from ``secrets``), shown
in groups as ``7KQ4-M9XD-2R``. Typing is forgiving: case, spaces and hyphens do not matter, O reads as 0 and I or
L as 1. Codes are made when first needed (a page build, a slip) and replaced one at a time (``rotate_code``); the
audit chain records that a code was made or replaced, never the code.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .chain import Event, now
from .schema import student_filter

if TYPE_CHECKING:
    from .store import Store

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
CODE_LENGTH = 10  # 50 bits
GROUPS = (4, 4, 2)
_TYPED = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SPACING = re.compile(r"[-\s]")


def new_code() -> str:
    """A fresh random code, grouped for reading (``7KQ4-M9XD-2R``)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    parts, start = [], 0
    for size in GROUPS:
        parts.append(raw[start:start + size])
        start += size
    return "-".join(parts)


def normalize_code(typed: str) -> str:
    """A code as typed (any case, spaces, hyphens, O for 0, I or L for 1) as the key derivation takes it."""
    return _SPACING.sub("", typed.upper()).translate(_TYPED)


class QueryCodes:
    """The query_codes table of one store."""

    def __init__(self, store: Store) -> None:
        self.db, self.append_audit = store.db, store.append_audit

    def query_codes(self, student_nos: Iterable[str] | None = None) -> dict[str, str]:
        """学号 → grouped 查询码 of the given students (or all) that have one."""
        where, args = student_filter(student_nos)
        return dict(self.db.execute(f"SELECT student_no, code FROM query_codes{where}", args))

    def issue_missing_codes(self) -> int:
        """Give every student without a 查询码 one (one audit event for the batch, no code in it); how many were
        made. Call inside a transaction."""
        missing = [no for (no,) in self.db.execute(
            "SELECT student_no FROM students WHERE student_no NOT IN (SELECT student_no FROM query_codes)")]
        if missing:
            stamp = now()
            self.db.conn.executemany("INSERT INTO query_codes (student_no, code, created_at) VALUES (?, ?, ?)",
                                     [(no, new_code(), stamp) for no in missing])
            self.append_audit([Event("query_code", decision="issued", new=str(len(missing)),
                                     detail=f"为 {len(missing)} 名学生生成查询码", at=stamp)])
        return len(missing)

    def rotate_code(self, student_no: str, operator: str) -> str:
        """Give one student a new 查询码 (audited, the code itself is not); call inside a transaction."""
        code, stamp = new_code(), now()
        self.db.execute("INSERT INTO query_codes (student_no, code, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (student_no) DO UPDATE SET code = excluded.code, created_at = excluded.created_at",
                        [student_no, code, stamp])
        self.append_audit([Event("query_code", student_no=student_no, decision="rotated", operator=operator,
                                 detail="查询码已更换，旧码在查询页下次生成后失效", at=stamp)])
        return code
