"""The full status matrix (学号 × steps, the manual's marks) as .csv (.xlsx: reports.excel.export_matrix)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

IDENTITY = ("学号", "姓名", "院系", "班级", "培养层次", "宿舍", "往届")


def matrix_csv(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    """CSV with a BOM so that Excel opens the Chinese text correctly; cells starting with = + - @ are quoted inert."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_inert(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _inert(value: str) -> str:
    # A leading apostrophe keeps spreadsheet programs from running user text as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
