"""Roster (学生名单) validation: Chinese headers, text IDs, check digits, dorms, flags, duplicates."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .identity import clean_text, id_card_problem, normalize_id_card, student_no_problem
from .loans import parse_lenders
from .marks import read_mark
from .model import FLAG_COLUMNS, LEVELS, WITHHELD_COLUMN, WITHHELD_WORDS, Student

BASE_COLUMNS = ("学号", "姓名", "性别", "身份证号", "院系", "专业", "班级", "宿舍", "培养层次")
COLUMNS = BASE_COLUMNS + tuple(FLAG_COLUMNS) + (WITHHELD_COLUMN,)
REQUIRED_COLUMNS = ("学号", "姓名", "身份证号", "院系", "班级")
NO_DORM = ("无住宿信息", "无", "-")
# 区-栋-层-房间 (2区-3栋-3层-0309), or a named building's 栋-层-房间 as graduate housing writes it
# (研究生公寓-1栋-2层-0201): the first part is a 区 number or a name that does not start with a digit.
_DORM = re.compile(r"^(\d+区|[^\d\s-][^\s-]*)-(\d+)栋-(\d+)层-(\d+)$")
DORM_HINT = "区-栋-层-房间，如 2区-3栋-3层-0309，或 研究生公寓-1栋-2层-0201"
# 暂缓发证 as typed: the certificate's name (毕业/结业证 as the manual writes it), 两证, or a yes/no mark (是 = 两证).
_WITHHELD_NAMES = {"学位证": (True, False), "毕业证": (False, True), "毕业/结业证": (False, True),
                   "毕业结业证": (False, True), "结业证": (False, True), "两证": (True, True),
                   "学位证、毕业证": (True, True), "毕业证、学位证": (True, True)}
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


def parse_withheld(value: object) -> tuple[bool, bool] | None:
    """暂缓发证 as (学位证 withheld, 毕业证 withheld): 学位证, 毕业证, 两证 or 否 (是 and the other yes marks mean
    两证, as before the roster named the certificate; blank is 否), or None if unrecognised."""
    mark = read_mark(value)
    if mark is not None:
        return (mark, mark)
    text = clean_text(str(value)).replace(" ", "").replace("，", "、").replace(",", "、").replace("+", "、")
    return _WITHHELD_NAMES.get(text)


def parse_dorm(value: str) -> str | None:
    """A normalised 宿舍 (区-栋-层-房间, e.g. 2区-3栋-3层-0309, or a named building's 研究生公寓-1栋-2层-0201), '' for
    none, or None if malformed."""
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


def _numeric_student_no(value: object, usual: int, reasons: list[str]) -> str:
    """A 学号 Excel stored as a number: taken as text when it has the cohort's usual length (no leading 0 can have
    been lost), otherwise refused saying how many digits it lacks."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        return _text_cell(value, "学号", reasons)
    digits = str(int(value))  # type: ignore[call-overload]
    if usual and len(digits) == usual:
        return digits
    if usual and len(digits) < usual:
        reasons.append(f"学号 {digits} 是数字格式，比其他学号少 {usual - len(digits)} 位，可能丢了开头的 0；"
                       "请把学号列设为“文本”格式，按学籍系统的学号重新输入")
    elif usual:
        reasons.append(f"学号 {digits} 是数字格式，比其他学号多 {len(digits) - usual} 位；请核对后按文本格式重新输入")
    else:
        reasons.append(f"学号 {digits} 是数字格式，名单中没有文本格式的学号可以对照，无法确认开头的 0 是否丢失；"
                       "请把学号列设为“文本”格式后重新输入（如果本届学号本来就没有开头的 0，"
                       "可加 --numeric-ids 按数字读入）")
    return ""


def usual_length(rows: Iterable[Mapping[str, object]], numeric_ids: bool = False) -> int:
    """The most common length of the 学号 a roster holds as text (with ``numeric_ids``, the coordinator's word that
    the numbers lost nothing: as numbers too), 0 for none."""
    lengths: dict[int, int] = {}
    for cells in rows:
        value = cells.get("学号")
        if numeric_ids and isinstance(value, int | float) and not isinstance(value, bool) \
                and float(value).is_integer():
            value = str(int(value))
        if isinstance(value, str) and value.strip():
            lengths[len(value.strip())] = lengths.get(len(value.strip()), 0) + 1
    return max(lengths, key=lambda n: (lengths[n], n)) if lengths else 0


def validate_row(row_number: int, cells: Mapping[str, object], class_required: bool = True,
                 usual: int = 0) -> Student | RowProblem:
    """One roster row as a Student, or every reason it is refused (班级 may be blank unless ``class_required``;
    ``usual``: the cohort's 学号 length, which a 学号 stored as a number must have to be taken)."""
    reasons: list[str] = []
    raw_no = cells.get("学号")
    student_no = (_numeric_student_no(raw_no, usual, reasons) if isinstance(raw_no, int | float)
                  else _text_cell(raw_no, "学号", reasons))
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
        reasons.append(f"宿舍“{cells.get('宿舍')}”格式应为 {DORM_HINT}（无住宿可留空）")
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
    """The flag columns (是/否), the national loan's lenders where 国家助学贷款 names them instead of 是
    (10534、12649, 校本部+潇湘: manual §2.1-1), and which certificates 暂缓发证 withholds (§3.2)."""
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
    withheld = parse_withheld(cells.get(WITHHELD_COLUMN))
    if withheld is None:
        words = "、".join(w for w in WITHHELD_WORDS.values() if w != "否")
        reasons.append(f"{WITHHELD_COLUMN}“{cells.get(WITHHELD_COLUMN)}”应为 {words} 或 否（是 表示两证都暂缓）")
        withheld = (False, False)
    flags["withheld_degree"], flags["withheld_diploma"] = withheld
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
                    class_required: bool = True, numeric_ids: bool = False) -> RosterResult:
    """Validate every row; duplicates of 学号 or 身份证号 are reported on each row involved. ``class_required``:
    the flow ticks by class (Flow.needs_class), so a blank 班级 is refused. A 学号 stored as a number is taken when
    it is as long as the roster's text 学号 (or, with ``numeric_ids``, its other 学号), listed in a warning."""
    result = RosterResult(warnings=check_headers(headers, class_required))
    parsed: list[tuple[int, Student]] = []
    rows = list(rows)
    usual, converted = usual_length((cells for _, cells in rows), numeric_ids), []
    for number, cells in rows:
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells.values()):
            continue
        outcome = validate_row(number, cells, class_required, usual)
        if isinstance(outcome, RowProblem):
            result.problems.append(outcome)
        else:
            parsed.append((number, outcome))
            if isinstance(cells.get("学号"), int | float):
                converted.append(number)
    if converted:
        shown = "、".join(map(str, converted[:10])) + (f" 等 {len(converted)} 行" if len(converted) > 10 else " 行")
        result.warnings.append(f"第 {shown}的学号是数字格式，与其他学号一样是 {usual} 位（没有丢失开头的 0），"
                               "已按文本读入；以后请把学号列设为“文本”格式")
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
