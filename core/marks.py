"""What a returned step cell means: ticked, not ticked, or something staff must be asked about."""

from __future__ import annotations

from .identity import clean_text

TICKED = frozenset({"✓", "√", "✔", "☑", "是", "Y", "YES", "1", "TRUE", "通过", "已通过", "=TRUE()", "T"})
UNTICKED = frozenset({"", "FALSE", "0", "否", "N", "NO", "=FALSE()", "F", "☐", "□"})


def read_mark(value: object) -> bool | None:
    """True for a tick, False for an empty or unticked cell, None for a mark that must not be guessed.

    Accepts booleans (Excel 365 checkboxes, WPS, LibreOffice), 1/0 numbers (LibreOffice may save a
    typed TRUE as 1), and typed marks (✓ √ ✔ 是 Y y 1 TRUE 通过 / empty FALSE 0 否 N). A cross (x × ✗) is not a tick:
    to Chinese staff it means "no", so it is refused like any other unclear mark.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return {1.0: True, 0.0: False}.get(float(value))
    text = clean_text(str(value)).upper()
    if text in TICKED:
        return True
    if text in UNTICKED:
        return False
    return None


def column_shifted(issued_box_empty: bool, value_below_rows: bool) -> bool:
    """Whether a tick column may have moved apart from its rows — the one rule for every ticking sheet: a value
    below the last row (cells inserted with shift down), or an issued box that came back empty (a cell inserted
    or deleted with shift, a column sorted alone with its blank cells, or a box emptied with Delete, which cannot
    be told apart from those)."""
    return issued_box_empty or value_below_rows
