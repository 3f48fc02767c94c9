"""Roster (学生名单) validation: Chinese headers, text IDs, check digits, dorms, flags, duplicates."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .identity import clean_text, id_card_problem, normalize_id_card, student_no_problem
from .loans import parse_lenders
from .marks import read_mark
from .model import FLAG_COLUMNS, LEVELS, Student

BASE_COLUMNS = ("学号", "姓名", "性别", "身份证号", "院系", "专业", "班级", "宿舍", "培养层次")
COLUMNS = BASE_COLUMNS + tuple(FLAG_COLUMNS)
REQUIRED_COLUMNS = ("学号", "姓名", "身份证号", "院系", "班级")
NO_DORM = ("无住宿信息", "无", "-")
_DORM = re.compile(r"^(\d+)区-(\d+)栋-(\d+)层-(\d+)$")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?E\+\d+$", re.IGNORECASE)


class RosterError(ValueError):
    """The roster as a whole cannot be read (missing columns, no rows)."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One bad row: its row number in the file and every reason, in Chinese."""

    row: int
    student_no: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        who = f"（学号 {self.student_no}）" if self.student_no else ""
        return f"第 {self.row} 行{who}：{'；'.join(self.reasons)}"


@dataclass
class RosterResult:
    """Valid students, bad rows, and warnings about the file as a whole."""

    students: list[Student] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_flag(value: object) -> bool | None:
    """A roster flag cell as a bool (是/否, 1/0, Y/N, TRUE/FALSE, ✓/empty), or None if unrecognised.

    The same vocabulary as a returned step cell: one list of marks for "yes" and "no" everywhere.
    """
    return read_mark(value)


def parse_dorm(value: str) -> str | None:
    """A normalised 宿舍 (区-栋-层-房间, e.g. 2区-3栋-3层-0309), '' for none, or None if malformed."""
    text = clean_text(value).replace("－", "-").replace("—", "-")
    if text in NO_DORM or not text:
        return ""
    return text if _DORM.match(text) else None


def _text_cell(value: object, column: str, reasons: list[str]) -> str:
    """A cell that must be text: numbers are refused because Excel already damaged them."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        reasons.append(
            f"{column}是数字格式（{value}），Excel 会丢掉前导 0 和第 15 位之后的数字；"
            f"请把{column}列设为“文本”格式后重新输入"
        )
        return ""
    return clean_text(str(value))


def validate_row(row_number: int, cells: Mapping[str, object], class_required: bool = True) -> Student | RowProblem:
    """One roster row as a Student, or every reason it is refused (班级 may be blank unless ``class_required``)."""
    reasons: list[str] = []
    student_no = _text_cell(cells.get("学号"), "学号", reasons)
    if student_no and _SCIENTIFIC.match(student_no):
        reasons.append(f"学号“{student_no}”已被 Excel 变成科学计数法，请把学号列设为文本后重新输入")
    elif not reasons and (problem := student_no_problem(student_no)):
        reasons.append(problem)
    id_card = normalize_id_card(_text_cell(cells.get("身份证号"), "身份证号", reasons))
    if not any(r.startswith("身份证号") for r in reasons):
        if not id_card:
            reasons.append("身份证号为空")
        elif problem := id_card_problem(id_card):
            reasons.append(problem)
    name = clean_text(str(cells.get("姓名") or ""))
    if not name:
        reasons.append("姓名为空")
    gender = clean_text(str(cells.get("性别") or ""))
    if gender not in ("男", "女", ""):
        reasons.append(f"性别“{gender}”应为 男 或 女")
    dorm = parse_dorm(str(cells.get("宿舍") or ""))
    if dorm is None:
        reasons.append(f"宿舍“{cells.get('宿舍')}”格式应为 区-栋-层-房间，如 2区-3栋-3层-0309（无住宿可留空）")
    level = clean_text(str(cells.get("培养层次") or "")) or "本科"
    if level not in LEVELS:
        reasons.append(f"培养层次“{level}”应为 {'、'.join(LEVELS)} 之一")
    college = clean_text(str(cells.get("院系") or ""))
    if not college:
        reasons.append("院系为空")
    class_name = clean_text(str(cells.get("班级") or ""))
    if not class_name and class_required:
        reasons.append("班级为空（本流程有按班级批量办理的离校点，每个学生都需要班级）")
    flags, lenders = _flags(cells, reasons)
    if reasons:
        return RowProblem(row_number, student_no, tuple(reasons))
    return Student(
        student_no=student_no, name=name, gender=gender, id_card=id_card, college=college,
        major=clean_text(str(cells.get("专业") or "")), class_name=class_name, dorm=dorm or "",
        level=level, lenders=lenders, **flags,
    )


def _flags(cells: Mapping[str, object], reasons: list[str]) -> tuple[dict[str, bool], tuple[str, ...]]:
    """The flag columns (是/否), and the national loan's lenders where 国家助学贷款 names them instead of 是
    (10534、12649, 校本部+潇湘: manual §2.1-1)."""
    flags: dict[str, bool] = {}
    lenders: tuple[str, ...] = ()
    for column, attr in FLAG_COLUMNS.items():
        raw = cells.get(column)
        value = parse_flag(raw)
        if value is None and attr == "national_loan":
            named = parse_lenders(str(raw))
            if named:
                value, lenders = True, named
        if value is None:
            hint = "，或写明经办单位（如 10534、12649 或 校本部、潇湘）" if attr == "national_loan" else ""
            reasons.append(f"{column}“{raw}”应为 是 或 否{hint}")
        flags[attr] = bool(value)
    return flags, lenders


def check_headers(headers: Iterable[str], class_required: bool = True) -> list[str]:
    """Warnings about unknown columns; raises RosterError when a required column is missing."""
    present = [clean_text(h) for h in headers]
    missing = [c for c in REQUIRED_COLUMNS if c not in present and (class_required or c != "班级")]
    if missing:
        raise RosterError(
            f"名单缺少必需的列：{'、'.join(missing)}。请用 lixiao students template 生成模板，按模板的列名填写"
        )
    dupes = sorted({h for h in present if h and present.count(h) > 1})
    if dupes:
        raise RosterError(f"名单中有重复的列名：{'、'.join(dupes)}，请删除多余的列")
    unknown = [h for h in present if h and h not in COLUMNS]
    return [f"忽略未知的列：{'、'.join(unknown)}"] if unknown else []


def validate_roster(headers: list[str], rows: Iterable[tuple[int, Mapping[str, object]]],
                    class_required: bool = True) -> RosterResult:
    """Validate every row; duplicates of 学号 or 身份证号 are reported on each row involved. ``class_required``:
    the flow ticks by class (Flow.needs_class), so a blank 班级 is refused."""
    result = RosterResult(warnings=check_headers(headers, class_required))
    parsed: list[tuple[int, Student]] = []
    for number, cells in rows:
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells.values()):
            continue
        outcome = validate_row(number, cells, class_required)
        if isinstance(outcome, RowProblem):
            result.problems.append(outcome)
        else:
            parsed.append((number, outcome))
    by_no: dict[str, list[int]] = {}
    by_id: dict[str, list[int]] = {}
    for number, student in parsed:
        by_no.setdefault(student.student_no, []).append(number)
        by_id.setdefault(student.id_card, []).append(number)
    for number, student in parsed:
        reasons = []
        same_no = [n for n in by_no[student.student_no] if n != number]
        if same_no:
            reasons.append(f"学号重复（与第 {'、'.join(map(str, same_no))} 行相同）")
        same_id = [n for n in by_id[student.id_card] if n != number]
        if same_id:
            reasons.append(f"身份证号重复（与第 {'、'.join(map(str, same_id))} 行相同）")
        if reasons:
            result.problems.append(RowProblem(number, student.student_no, tuple(reasons)))
        else:
            result.students.append(student)
    result.problems.sort(key=lambda p: p.row)
    if not result.students and not result.problems:
        raise RosterError("名单中没有任何学生行")
    return result
