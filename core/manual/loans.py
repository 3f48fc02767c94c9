"""National student loans held at more than one lender (manual §2.1-1): some graduates have loans both at 校本部
(10534) and at 潇湘 (12649), and "应全部确认完" — the step passes only when every lender has confirmed."""

from __future__ import annotations

import re
from collections.abc import Set

from .identity import clean_text
from .model import Status, Student

# The lenders the manual names, by their code (the school code the loan contract is held under).
LENDERS = {"10534": "校本部", "12649": "潇湘"}
_BY_NAME = {name: code for code, name in LENDERS.items()}
_SPLIT = re.compile(r"[、,，;；/+＋和及\s]+")
NATIONAL_FEED = "loans:national"


def lender_label(code: str) -> str:
    """校本部(10534) (only the manual's lenders are accepted: parse_lenders)."""
    return f"{LENDERS[code]}({code})"


def parse_lenders(text: str) -> tuple[str, ...] | None:
    """The lender codes a roster or feed cell names ("10534", "潇湘", "10534、12649", "校本部+潇湘"), sorted; None
    when a part is not one of the manual's lenders (a mistyped 10543 would otherwise wait for a confirmation
    that never comes)."""
    codes = set()
    for part in _SPLIT.split(clean_text(text)):
        if not part:
            continue
        code = _BY_NAME.get(part, part)
        if code not in LENDERS:
            return None
        codes.add(code)
    return tuple(sorted(codes))


def named(student: Student) -> bool:
    """True when the roster names the student's lenders (10534、12649): each of them must confirm. A loan marked
    只 是 names none, and one confirmation (or the college's tick) settles it, as before."""
    return bool(student.lenders)


def several(student: Student) -> bool:
    """True when the student's national loan is held at more than one lender."""
    return len(student.lenders) > 1


def missing_lenders(student: Student, confirmed: Set[str]) -> list[str]:
    """The student's named lenders that have not confirmed yet (none when the roster names none)."""
    return [code for code in student.lenders if code not in confirmed]


def lenders_outcome(student: Student, confirmed: Set[str]) -> tuple[Status, str]:
    """The 国家助学贷款还款确认 status once some lenders confirmed: passed when all have, else pending with the
    remark the workbook shows (which are still missing)."""
    missing = missing_lenders(student, confirmed)
    done = [lender_label(c) for c in student.lenders if c in confirmed]
    if not missing:
        return Status.PASSED, "贷款系统已确认：" + "、".join(done)
    return Status.PENDING, (f"已确认：{'、'.join(done) or '无'}；尚缺：" + "、".join(map(lender_label, missing)))


def _places(student: Student) -> str:
    count = len(student.lenders)
    return "两处" if count == 2 else f"{count} 处"


def awaiting_text(student: Student) -> str:
    """What a workbook row says before any lender confirmed."""
    if not several(student):
        return f"国家助学贷款需 {lender_label(student.lenders[0])} 确认"
    return f"国家助学贷款在 {'、'.join(map(lender_label, student.lenders))} {_places(student)}，均需确认"


def refusal(student: Student, confirmed: Set[str]) -> str:
    """Why a tick on the loan step is refused while lenders are missing ('' when none is)."""
    missing = missing_lenders(student, confirmed)
    if not missing:
        return ""
    if several(student):
        where = f"在 {'、'.join(map(lender_label, student.lenders))} {_places(student)}，应全部确认完；"
    else:
        where = f"由 {lender_label(student.lenders[0])} 经办；"
    return (f"该生的国家助学贷款{where}尚缺 {'、'.join(map(lender_label, missing))} 的确认"
            "（贷款确认名单中写明经办单位）")
