"""Plain tables from .xlsx or .csv bytes (rosters and feed exports), with typed cells kept."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from typing import Any

import openpyxl
from openpyxl.xml import DEFUSEDXML

MAX_ROWS = 300_000
MAX_COLUMNS = 200
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"


class TableError(ValueError):
    """A table file cannot be read; the message says what the user should do."""


@dataclass
class Table:
    """Headers and numbered rows (row numbers as the user sees them in the file)."""

    headers: list[str]
    rows: list[tuple[int, dict[str, Any]]]


def read_table(data: bytes, name: str) -> Table:
    """Read the first sheet of an .xlsx, or a CSV (UTF-8 or GB18030), sniffing bytes rather than the name."""
    if not data:
        raise TableError(f"{name} 是空文件")
    if data.startswith(OLE_MAGIC):
        raise TableError(f"{name} 是旧版 .xls 或加密的工作簿；请取消密码并另存为 .xlsx 后重试")
    if data.startswith(ZIP_MAGIC):
        return _read_xlsx(data, name)
    if name.lower().endswith((".xlsx", ".xlsm")):
        raise TableError(f"{name} 不是有效的 .xlsx 文件（可能已损坏或只是改了扩展名）")
    return _read_csv(data, name)


def _decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TableError(f"{name} 既不是 UTF-8 也不是 GBK 编码的 CSV，请另存为“CSV UTF-8”")


def _read_csv(data: bytes, name: str) -> Table:
    text = _decode(data, name)
    if "\x00" in text:
        raise TableError(f"{name} 不是文本 CSV 文件，请提供 .xlsx 或 .csv")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        headers = [h.strip() for h in next(reader)]
    except StopIteration:
        raise TableError(f"{name} 没有表头行") from None
    rows = []
    for number, values in enumerate(reader, start=2):
        if number > MAX_ROWS:
            raise TableError(f"{name} 超过 {MAX_ROWS} 行，请拆分后导入")
        cells: dict[str, Any] = {h: (values[i] if i < len(values) else None) for i, h in enumerate(headers) if h}
        rows.append((number, cells))
    return Table(headers, rows)


def _read_xlsx(data: bytes, name: str) -> Table:
    if not DEFUSEDXML:
        raise TableError("defusedxml 未安装，拒绝读取 .xlsx（请重新安装 lixiao）")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise TableError(f"{name} 不是能打开的 .xlsx 工作簿（可能是压缩包、旧版 .xls 或已损坏），"
                         "请用 Excel 或 WPS 打开后另存为 .xlsx（Excel 工作簿）再导入") from None
    try:
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # never trust <dimension>; walk only the cells present
        iterator = sheet.iter_rows(values_only=True)
        header_row = next(iterator, None)
        if header_row is None:
            raise TableError(f"{name} 的第一个工作表是空的")
        headers = ["" if h is None else str(h).strip() for h in header_row[:MAX_COLUMNS]]
        rows = []
        for number, values in enumerate(iterator, start=2):
            if number > MAX_ROWS:
                raise TableError(f"{name} 超过 {MAX_ROWS} 行，请拆分后导入")
            cells = {h: (values[i] if i < len(values) else None) for i, h in enumerate(headers) if h}
            rows.append((number, cells))
        return Table(headers, rows)
    finally:
        book.close()
