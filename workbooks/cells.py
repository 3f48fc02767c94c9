"""One sheet of a returned workbook and what its cells mean: values, formulas, error values, ticks."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from xlsxwriter.utility import xl_col_to_name

from lixiao.core.identity import clean_text, strip_invisible
from lixiao.core.marks import AMBIGUOUS, read_status
from lixiao.core.model import Status

_FORMULA_CELL = re.compile(
    rb'<(?:\w+:)?c\s([^>]*?)>\s*<(?:\w+:)?f(?:\s[^>]*)?(?:/>|>([^<]*)</(?:\w+:)?f>)\s*(?:<(?:\w+:)?v>([^<]*)</(?:\w+:)?v>)?')


_REF = re.compile(rb'\br="([A-Z]{1,3}[0-9]{1,7})"')
# An error value kept without its formula (a pasted VLOOKUP result): <c r="E5" t="e"><v>#N/A</v></c>.
# python-calamine reads it as '' — the same as a blank cell — so the XML is asked.


_ERROR_CELL = re.compile(rb'<(?:\w+:)?c\s([^>]*\bt="e"[^>]*)>(.*?)</(?:\w+:)?c>', re.DOTALL)


_VALUE = re.compile(rb'<(?:\w+:)?v>([^<]*)</(?:\w+:)?v>')


_BOOLEAN_FORMULA = re.compile(r"^=?\s*(TRUE|FALSE)\s*\(\s*\)$", re.IGNORECASE)


def cell_text(value: Any, clean: Callable[[str], str] = clean_text) -> str:
    """A cell as text: whole floats without ".0", then ``clean`` (identity cells and marks: NFKC-folded)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return clean(str(value))


def remark_text(value: Any) -> str:
    """Free text (备注, 理由) as typed: trimmed and without invisible characters, full-width punctuation kept."""
    return cell_text(value, strip_invisible)


def formula_cells(xml: bytes) -> dict[str, tuple[str, str | None]]:
    """Cells holding a formula: ref → (formula text, cached value or None)."""
    if b"<f" not in xml and b":f" not in xml:
        return {}
    found = {}
    for match in _FORMULA_CELL.finditer(xml):
        ref = _REF.search(match.group(1))
        if ref:
            formula = html.unescape((match.group(2) or b"").decode("utf-8", "replace"))
            cached = match.group(3)
            found[ref.group(1).decode()] = (formula, None if cached is None else cached.decode("utf-8", "replace"))
    return found


def error_cells(xml: bytes) -> dict[str, str]:
    """Cells holding an error value (t="e"): ref → the error text (#N/A, #REF!, …)."""
    if b't="e"' not in xml:
        return {}
    found = {}
    for match in _ERROR_CELL.finditer(xml):
        ref = _REF.search(match.group(1))
        if ref:
            value = _VALUE.search(match.group(2))
            found[ref.group(1).decode()] = value.group(1).decode("utf-8", "replace") if value else "#错误"
    return found


class Sheet:
    """A sheet's values (absolute positions from A1) and its formula cells."""

    def __init__(self, name: str, grid: list[list[Any]], formulas: dict[str, tuple[str, str | None]],
                 errors: dict[str, str] | None = None) -> None:
        self.name = name
        self.grid = grid
        self.formulas = formulas
        self.errors = errors or {}

    def text(self, row: int, col: int, value: Any) -> str:
        """A cell's text, or "" where it holds an error value (calamine reads those as '')."""
        return "" if f"{xl_col_to_name(col)}{row + 1}" in self.errors else cell_text(value)

    def is_blank(self, row: int, col: int, value: Any) -> bool:
        """True for a truly empty cell (no value, no formula, no error value)."""
        ref = f"{xl_col_to_name(col)}{row + 1}"
        return (value is None or value == "") and ref not in self.formulas and ref not in self.errors

    def status(self, row: int, col: int, value: Any) -> tuple[Status | None, str]:
        """The status a step cell states (a tick, blank, ×/未通过, ○/可办可不办), or None with the reason it cannot
        be read."""
        ref = f"{xl_col_to_name(col)}{row + 1}"
        if ref in self.errors:
            return None, (f"单元格是错误值 {self.errors[ref]}（常见于粘贴的公式结果），不能当作未勾选；"
                          "请改为勾选或留空")
        if ref in self.formulas:
            formula, cached = self.formulas[ref]
            if not _BOOLEAN_FORMULA.match(formula):
                return None, (f"单元格是公式（={formula[:60]}），勾选格只能是勾、TRUE/FALSE，"
                              "或直接输入 ×、“未通过”、○，不能是公式")
            if cached is None:
                return None, "单元格是 TRUE()/FALSE() 公式但没有保存计算结果，请在 Excel 中重新计算并保存"
            ticked = formula.upper().lstrip("=").strip().startswith("TRUE")
            return (Status.PASSED if ticked else Status.PENDING), ""
        status = read_status(value)
        if status is None:
            text = cell_text(value)
            if text.upper() in AMBIGUOUS:
                return None, (f"“{text}”含义不明（有人用它表示通过，有人表示不通过）：已通过请勾选或用 √，"
                              "未通过请输入 × 或“未通过”，未办理请留空或选 FALSE")
            return None, (f"无法识别的勾选内容“{text}”（应为勾、TRUE/FALSE、✓、√，未通过写 × 或“未通过”，"
                          "可办可不办写 ○，或留空）")
        return status, ""

    def mark(self, row: int, col: int, value: Any) -> tuple[bool | None, str]:
        """A yes/no cell (batch rows, 解除限制): ticked or not, or None with the reason it cannot be read."""
        status, reason = self.status(row, col, value)
        if status is Status.FAILED or status is Status.OPTIONAL:
            return None, (f"“{cell_text(value)}”（{status.label}）只能在“办理”表逐个学生填写，"
                          "这里只能勾选或取消勾选")
        return (None if status is None else status is Status.PASSED), reason
