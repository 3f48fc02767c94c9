"""External feeds (library, finance, loans): what each exported row means for its step."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from lixiao.core.manual.identity import clean_text, normalize_id_card
from lixiao.core.manual.loans import parse_lenders
from lixiao.core.manual.model import Status

FEED_KINDS = ("library", "finance", "loans")
FEED_COLUMNS = {
    "library": ("学号", "借阅册数", "欠费"),
    "finance": ("学号", "欠费金额"),
    "loans": (),  # 身份证号 or 学号, optionally 贷款类型
}
LOAN_TYPES = {"国家助学贷款": "loans:national", "国家": "loans:national", "national": "loans:national",
              "生源地贷款": "loans:local", "生源地助学贷款": "loans:local", "生源地": "loans:local",
              "local": "loans:local"}


class FeedError(ValueError):
    """A feed file as a whole cannot be used (wrong columns, no rows)."""


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """What one feed row says: which student (by 学号 or 身份证号), which feed step, the outcome."""

    row: int
    student_no: str
    id_card: str
    feed: str
    status: Status
    remark: str
    lender: str = ""  # the loan's lender (10534, 12649) where the loans export names it


WHOLE_SCHOOL_FEEDS = ("library", "finance")  # exports of every student: someone missing is a gap to report


def feed_label(feed: str) -> str:
    """A feed's name in Chinese."""
    return {"library": "图书馆", "finance": "财务", "loans:national": "国家助学贷款", "loans:local": "生源地贷款"}.get(
        feed, feed)


@dataclass
class FeedParse:
    """Entries read from a feed file and the rows that could not be read."""

    entries: list[FeedEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _number(value: object) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return Decimal(0)
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(clean_text(str(value)).replace(",", "").replace("元", "").replace("¥", ""))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def library_outcome(books: Decimal, fines: Decimal) -> tuple[Status, str]:
    """归还图书: passed when 借阅册数 and 欠费 are both 0, else failed with the reason."""
    reasons = []
    if books:
        reasons.append(f"未还图书 {books.normalize():f} 册")
    if fines:
        reasons.append(f"图书馆欠费 {fines:.2f} 元")
    return (Status.FAILED, "；".join(reasons)) if reasons else (Status.PASSED, "")


def finance_outcome(amount: Decimal) -> tuple[Status, str]:
    """缴还欠款: passed when 欠费金额 is 0, else failed with the amount."""
    return (Status.FAILED, f"欠费 {amount:.2f} 元") if amount else (Status.PASSED, "")


_BOOKS, _FINES = re.compile(r"未还图书 (\d+) 册"), re.compile(r"图书馆欠费 (\d+\.\d\d) 元")
_OWED = re.compile(r"欠费 (\d+\.\d\d) 元")


def library_amounts(status: Status, remark: str) -> tuple[str, str] | None:
    """(借阅册数, 欠费 in 元) that a library feed's status and remark stand for — library_outcome read back — or None
    when they are not a library_outcome (a status set by hand, a student the export left out)."""
    books, fines = _BOOKS.search(remark), _FINES.search(remark)
    shown = (books.group(1) if books else "0", fines.group(1) if fines else "0.00")
    return shown if library_outcome(Decimal(shown[0]), Decimal(shown[1])) == (status, remark) else None


def finance_amount(status: Status, remark: str) -> str | None:
    """The 欠费金额 in 元 that a finance feed's status and remark stand for (finance_outcome read back), or None."""
    owed = _OWED.fullmatch(remark)
    shown = owed.group(1) if owed else "0.00"
    return shown if finance_outcome(Decimal(shown)) == (status, remark) else None


LENDER_COLUMNS = ("经办单位", "学校代码", "贷款学校", "贷款机构")


def parse_feed(
    kind: str, headers: list[str], rows: Iterable[tuple[int, Mapping[str, object]]], loan: str = "",
    lender: str = "",
) -> FeedParse:
    """Read a feed export into entries; ``loan`` (national/local) is needed when no 贷款类型 column; ``lender``
    (10534, 12649) names the lender of every row where no 经办单位 column does."""
    if kind not in FEED_KINDS:
        raise FeedError(f"未知的数据源 {kind}，可选：{'、'.join(FEED_KINDS)}")
    present = {clean_text(h) for h in headers}
    missing = [c for c in FEED_COLUMNS[kind] if c not in present]
    if missing:
        raise FeedError(f"{kind} 数据缺少列：{'、'.join(missing)}（需要：{'、'.join(FEED_COLUMNS[kind])}）")
    if kind == "loans":
        if not present & {"学号", "身份证号"}:
            raise FeedError("贷款确认名单需要“身份证号”或“学号”列")
        if "贷款类型" not in present and loan not in ("national", "local"):
            raise FeedError("贷款确认名单没有“贷款类型”列，请用 --loan national 或 --loan local 指明贷款种类")
    result = FeedParse()
    for number, cells in rows:
        raw_no = cells.get("学号")
        student_no = "" if raw_no is None else clean_text(str(raw_no))
        if isinstance(raw_no, int | float) and not isinstance(raw_no, bool):
            result.problems.append(f"第 {number} 行：学号是数字格式，请导出为文本")
            continue
        id_card = normalize_id_card(str(cells.get("身份证号") or ""))
        if not student_no and not id_card:
            if any(v not in (None, "") for v in cells.values()):
                result.problems.append(f"第 {number} 行：没有学号也没有身份证号")
            continue
        if kind == "library":
            books, fines = _number(cells.get("借阅册数")), _number(cells.get("欠费"))
            if books is None or fines is None:
                result.problems.append(f"第 {number} 行：借阅册数或欠费不是非负数字")
                continue
            status, remark = library_outcome(books, fines)
            feed = "library"
        elif kind == "finance":
            amount = _number(cells.get("欠费金额"))
            if amount is None:
                result.problems.append(f"第 {number} 行：欠费金额不是非负数字")
                continue
            status, remark = finance_outcome(amount)
            feed = "finance"
        else:
            loan_row = _loan_row(number, cells, loan, lender)
            if isinstance(loan_row, str):
                result.problems.append(loan_row)
                continue
            feed, row_lender = loan_row
            result.entries.append(FeedEntry(number, student_no, id_card, feed, Status.PASSED, "贷款系统已确认",
                                            row_lender))
            continue
        result.entries.append(FeedEntry(number, student_no, id_card, feed, status, remark))
    return result


def _loan_row(number: int, cells: Mapping[str, object], loan: str, lender: str) -> tuple[str, str] | str:
    """A confirmation row's (feed, lender), or the problem with it."""
    typed = clean_text(str(cells.get("贷款类型") or ""))
    feed = LOAN_TYPES.get(typed, "") if typed else f"loans:{loan}"
    if not feed:
        return f"第 {number} 行：贷款类型“{typed}”应为 国家助学贷款 或 生源地贷款"
    column = next((c for c in LENDER_COLUMNS if cells.get(c) not in (None, "")), None)
    named = lender if column is None else str(cells[column])
    if not named:
        return feed, ""
    codes = parse_lenders(named)
    if not codes or len(codes) != 1:
        return f"第 {number} 行：经办单位“{named}”应为一个学校代码或名称（如 10534 或 校本部、12649 或 潇湘）"
    return feed, codes[0]
