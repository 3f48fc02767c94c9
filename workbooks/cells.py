"""One sheet of a returned workbook and what its cells mean: values, formulas, error values, ticks."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from lixiao.core.manual.identity import INVISIBLE as _INVISIBLE
from lixiao.core.manual.identity import clean_text, each_text, strip_invisible
from lixiao.core.manual.marks import AMBIGUOUS, read_status
from lixiao.core.manual.model import Status

_BOOLEAN_FORMULA = re.compile(r"^=?\s*(TRUE|FALSE)\s*\(\s*\)$", re.IGNORECASE)


def column_name(col: int) -> str:
    """The letters of a zero-based column (0 → A, 26 → AA), as XlsxWriter's xl_col_to_name gives them — without
    importing XlsxWriter (≈ 50 ms) into the parser."""
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cell_text(value: Any, clean: Callable[[str], str] = clean_text) -> str:
    """A cell as text: whole floats without ".0", then ``clean`` (identity cells and marks: NFKC-folded)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return clean(str(value))


def column_texts(values: list[Any]) -> list[str]:
    """``cell_text`` of every value of a column, NFKC-folded in one pass over the whole column (``each_text``)."""
    raw = [v if type(v) is str else cell_text(v, _as_is) for v in values]
    return [text.strip() for text in each_text(raw, _fold)]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text.translate(_INVISIBLE))


def _as_is(text: str) -> str:
    return text


def remark_text(value: Any) -> str:
    """Free text (备注, 理由) as typed: trimmed and without invisible characters, full-width punctuation kept."""
    return cell_text(value, strip_invisible)


class Sheet:
    """A sheet's values (absolute positions from A1) and its formula cells."""

    def __init__(self, name: str, grid: list[list[Any]], formulas: dict[str, tuple[str, str | None]],
                 errors: dict[str, str] | None = None) -> None:
        self.name = name
        self.grid = grid
        self.formulas = formulas
        self.errors = errors or {}
        self._letters: dict[int, str] = {}

    def ref(self, row: int, col: int) -> str:
        """The A1 reference of a zero-based cell position."""
        letters = self._letters.get(col)
        if letters is None:
            letters = self._letters[col] = column_name(col)
        return f"{letters}{row + 1}"

    def text(self, row: int, col: int, value: Any) -> str:
        """A cell's text, or "" where it holds an error value (calamine reads those as '')."""
        return "" if self.errors and self.ref(row, col) in self.errors else cell_text(value)

    def is_blank(self, row: int, col: int, value: Any) -> bool:
        """True for a truly empty cell (no value, no formula, no error value)."""
        if value is not None and value != "":
            return False
        ref = self.ref(row, col)
        return ref not in self.formulas and ref not in self.errors

    def status(self, row: int, col: int, value: Any) -> tuple[Status | None, str]:
        """The status a step cell states (a tick, blank, ×/未通过, ○/可办可不办), or None with the reason it cannot
        be read."""
        ref = self.ref(row, col)
        if ref in self.errors:
            return None, (f"单元格是错误值 {self.errors[ref]}（常见于粘贴的公式结果），不能当作未勾选；"
                          "已通过请勾选，未办理请选 FALSE 或输入“未办理”")
        if ref in self.formulas:
            formula, cached = self.formulas[ref]
            if not _BOOLEAN_FORMULA.match(formula):
                return None, (f"单元格是公式（={formula[:60]}），勾选格只能是勾、TRUE/FALSE，"
                              "或直接输入 ×、“未通过”、○，不能是公式")
            if cached is None:
                return None, "单元格是 TRUE()/FALSE() 公式但没有保存计算结果，请在 Excel 中重新计算并保存"
            ticked = formula.upper().lstrip("=").strip().startswith("TRUE")
            if cached.strip().upper() in (("0", "FALSE") if ticked else ("1", "TRUE")):
                return None, (f"单元格的公式是 {formula.strip()[:20]}，保存的值却是 {cached.strip()[:10]}，"
                              "两者不一致（文件可能被手工改动过）；请重新勾选后保存")
            return (Status.PASSED if ticked else Status.PENDING), ""
        status = read_status(value)
        if status is None:
            text = cell_text(value)
            if text.upper() in AMBIGUOUS:
                return None, (f"“{text}”含义不明（有人用它表示通过，有人表示不通过）：已通过请勾选或用 √，"
                              "未通过请输入 × 或“未通过”，未办理请选 FALSE 或输入“未办理”")
            return None, (f"无法识别的勾选内容“{text}”（应为勾、TRUE/FALSE、✓、√，未通过写 × 或“未通过”，"
                          "可办可不办写 ○，未办理选 FALSE 或输入“未办理”）")
        return status, ""

    def mark(self, row: int, col: int, value: Any) -> tuple[bool | None, str]:
        """A yes/no cell (batch rows, 解除限制): ticked or not, or None with the reason it cannot be read."""
        status, reason = self.status(row, col, value)
        if status is Status.FAILED or status is Status.OPTIONAL:
            return None, (f"“{cell_text(value)}”（{status.label}）只能在“办理”表逐个学生填写，"
                          "这里只能勾选或取消勾选")
        return (None if status is None else status is Status.PASSED), reason
