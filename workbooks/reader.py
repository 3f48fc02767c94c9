"""Read a returned workbook: its token, rows keyed by 学号, batch and waiver ticks, and every anomaly."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import python_calamine
from defusedxml import ElementTree

from lixiao.core.manual.identity import clean_text
from lixiao.core.manual.marks import SHIFTED_COLUMN as SHIFTED
from lixiao.core.manual.marks import column_shifted
from lixiao.core.manual.model import Status
from lixiao.core.storage.signing import digest, verify

from .cells import Sheet, cell_text, column_name, column_texts, remark_text
from .docprops import custom_properties, saved_by
from .layout import (
    COUNT_SUFFIX,
    GROUP_HEADERS,
    MAIN_SHEET,
    META_SHEET,
    PREREQ_HEADER,
    PROGRESS_HEADER,
    REMARK_HEADER,
    ROW_KEY_HEADER,
    WAIVER_HEADERS,
    WAIVER_SHEET,
    token_from_parts,
)
from .returned import (
    Anomaly,
    BatchTick,
    ReadError,
    Returned,
    ReturnedRow,
    TokenInfo,
    WaiverTick,
)
from .sheetxml import sheet_cells

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
       "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
       "pr": "http://schemas.openxmlformats.org/package/2006/relationships",
       "cp": "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties",
       "vt": "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"}
# A cell whose first child is a formula: <c r="E5" …><f …>TRUE()</f><v>1</v></c> (Excel and LibreOffice order).


HEADER_SEARCH_ROWS = 15


MAX_TEXT = 500  # characters kept of a remark, reason or identity cell; longer text is cut and reported


def _sheet_paths(archive: zipfile.ZipFile) -> dict[str, tuple[str, str]]:
    """Sheet name → (part path inside the zip, state) from workbook.xml and its relationships."""
    try:
        book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError) as exc:
        raise ReadError(f"工作簿结构损坏（{exc}）") from None
    targets = {r.get("Id"): r.get("Target", "") for r in rels.findall("pr:Relationship", _NS)}
    result = {}
    for sheet in book.findall("m:sheets/m:sheet", _NS):
        target = targets.get(sheet.get(f"{{{_NS['r']}}}id"), "")
        path = target.lstrip("/") if target.startswith("/") else "xl/" + target
        result[sheet.get("name", "")] = (path, sheet.get("state", "visible"))
    return result


def _find_header(grid: list[list[Any]], first: str) -> int | None:
    for index, row in enumerate(grid[:HEADER_SEARCH_ROWS]):
        if row and any(cell_text(v) == first for v in row[:3]):
            return index
    return None


def read_returned(data: bytes, key: bytes | None = None) -> Returned:
    """Parse a returned lixiao workbook; with ``key`` the token's signature is checked too."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ReadError("文件不是 .xlsx 工作簿（不是 zip 格式）") from None
    with archive:
        paths = _sheet_paths(archive)
        properties, wps_build = custom_properties(archive)
        program = saved_by(archive, wps_build)
        try:
            calamine = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - calamine raises its own error types for bad files
            raise ReadError(f"工作簿无法读取（{type(exc).__name__}）") from None

        def sheet(name: str) -> Sheet | None:
            if name not in paths:
                return None
            grid = calamine.get_sheet_by_name(name).to_python(skip_empty_area=False)
            try:
                xml = archive.read(paths[name][0])
            except KeyError:
                xml = b""
            return Sheet(name, grid, *sheet_cells(xml))

        token = _read_token(sheet(META_SHEET), properties, key)
        result = Returned(token=token, program=program)
        if paths.get(META_SHEET, ("", ""))[1] == "visible":
            result.anomalies.append(Anomaly("meta_visible", "隐藏的元数据表被取消隐藏（不影响处理）", META_SHEET))
        payload = token.payload or {}
        steps: dict[str, str] = payload.get("steps", {})
        if payload.get("kind") == "waiver":
            waiver_sheet = sheet(WAIVER_SHEET)
            if waiver_sheet is None:
                result.anomalies.append(Anomaly("sheet_missing", f"找不到工作表“{WAIVER_SHEET}”", WAIVER_SHEET))
            else:
                _read_waivers(waiver_sheet, steps, result)
                result.operator = _operator(waiver_sheet)
        else:
            main = sheet(MAIN_SHEET)
            if main is None:
                result.anomalies.append(Anomaly("sheet_missing", f"找不到工作表“{MAIN_SHEET}”", MAIN_SHEET))
            else:
                _read_main(main, steps, result)
                result.operator = _operator(main)
            for sheet_name, mode in payload.get("batch_sheets", {}).items():
                batch = sheet(sheet_name)
                if batch is None:
                    result.anomalies.append(Anomaly("sheet_missing", f"找不到批量工作表“{sheet_name}”", sheet_name))
                else:
                    _read_batch(batch, mode, steps, result)
        if "students_hash" in payload:
            returned = sorted({*result.rows, *result.waiver_students})
            result.students_match = digest(returned) == payload["students_hash"]
            if not result.students_match:
                result.anomalies.append(
                    Anomaly("students_changed", "学生名单与签发时不同（有行被删除、添加或学号被修改）"))
        return result


def _read_token(meta: Sheet | None, properties: dict[str, str], key: bytes | None) -> TokenInfo:
    """The signed identity: from the hidden _lixiao sheet, or — where a suite dropped that sheet — from the
    document properties (token1, token2 …); where both are there they must agree."""
    in_properties = token_from_parts(properties)
    if meta is None or len(meta.grid) < 3 or not meta.grid[1] or not meta.grid[2]:
        if not in_properties or not properties.get("signature"):
            return TokenInfo(None, "", properties.get("signature", ""), "missing", properties)
        payload_text, signature = in_properties, properties["signature"]
    else:
        payload_text, signature = str(meta.grid[1][0] or ""), str(meta.grid[2][0] or "")
    try:
        payload = json.loads(payload_text)
        if not isinstance(payload, dict):
            raise ValueError
    except ValueError:
        return TokenInfo(None, payload_text, signature, "malformed", properties)
    status = "unverified"
    if key is not None:
        status = "valid" if verify(payload_text, signature, key) else "bad_signature"
    if status == "valid" and ((properties.get("signature") and properties["signature"] != signature)
                              or (in_properties and in_properties != payload_text)):
        status = "bad_signature"  # the hidden sheet was copied into another workbook
    return TokenInfo(payload, payload_text, signature, status, properties)


def _operator(sheet: Sheet) -> str:
    for row in sheet.grid[:3]:
        for index, value in enumerate(row):
            if cell_text(value).rstrip("：:") == "经办人":
                for cell in row[index + 1:index + 3]:
                    text = cell_text(cell)
                    if text and not text.startswith("（"):
                        return text[:50]  # a name, not an essay
                return ""
    return ""


def _read_main(sheet: Sheet, steps: dict[str, str], result: Returned) -> None:
    header_row = _find_header(sheet.grid, "学号")
    if header_row is None:
        result.anomalies.append(Anomaly("header_missing", "找不到表头行（含“学号”的行）", sheet.name))
        return
    headers = [cell_text(v) for v in sheet.grid[header_row]]
    columns: dict[str, int] = {}
    for index, title in enumerate(headers):
        if title and title not in columns:
            columns[title] = index
    for name in steps:
        if name not in columns:
            result.anomalies.append(Anomaly("column_missing", f"找不到步骤列“{name}”", sheet.name, step=steps[name]))
    _check_key_column(sheet, columns, result)
    identity = list(dict.fromkeys(h for h in headers
                                  if h and h not in steps
                                  and h not in (PREREQ_HEADER, PROGRESS_HEADER, REMARK_HEADER, ROW_KEY_HEADER)))
    key_col = columns.get(ROW_KEY_HEADER)
    remark_col = columns.get(REMARK_HEADER)
    body = sheet.grid[header_row + 1:]

    def column(index: int | None) -> list[Any]:
        return [None] * len(body) if index is None else [r[index] if index < len(r) else None for r in body]

    numbers = column_texts(column(columns.get("学号")))
    texts = [[t[:MAX_TEXT] for t in column_texts(column(columns[h]))] for h in identity]
    identities = [dict(zip(identity, values, strict=True)) for values in zip(*texts, strict=True)] if texts else \
        [{} for _ in body]
    remarks = column(remark_col)
    keys = column(key_col)
    for offset, values, student_no, row_identity, remark_value, key_value in zip(
            range(header_row + 1, header_row + 1 + len(body)), body, numbers, identities, remarks, keys, strict=True):
        if not student_no:
            _outside_rows(sheet, offset, values, steps, columns, result)
            continue
        ticks, blank = _read_ticks(sheet, offset, values, steps, columns, student_no, result)
        remark = remark_text(remark_value)
        if len(remark) > MAX_TEXT:
            result.anomalies.append(Anomaly("text_too_long", f"备注超过 {MAX_TEXT} 字，只保留前 {MAX_TEXT} 字",
                                            sheet.name, sheet.ref(offset, columns[REMARK_HEADER]), student_no))
        key = sheet.text(offset, key_col, key_value)[:64] if key_col is not None else ""
        row = ReturnedRow(offset + 1, student_no[:64], row_identity, ticks, remark[:MAX_TEXT], key, blank)
        if student_no in result.rows:
            result.duplicates.append(row)
            result.anomalies.append(Anomaly("duplicate_student", f"学号 {student_no} 出现多次（第 "
                                            f"{result.rows[student_no].row} 行和第 {row.row} 行）", sheet.name,
                                            f"A{offset + 1}", student_no))
        else:
            result.rows[student_no] = row


def _outside_rows(sheet: Sheet, offset: int, values: list[Any], steps: dict[str, str], columns: dict[str, int],
                  result: Returned) -> None:
    """A row without a 学号: content there is ignored and reported; a tick there means its column was shifted."""
    if any(cell_text(v) for v in values):
        result.anomalies.append(Anomaly("row_without_student_no", "有内容的行没有学号，已忽略", sheet.name,
                                        f"A{offset + 1}"))
    for name, code in steps.items():  # a tick below the students: its column was shifted down
        col = columns.get(name)
        if col is not None and col < len(values) and not sheet.is_blank(offset, col, values[col]):
            result.anomalies.append(Anomaly("tick_outside_rows", "勾选列在学生行之外有内容", sheet.name,
                                            sheet.ref(offset, col), step=code))


def _read_ticks(sheet: Sheet, offset: int, values: list[Any], steps: dict[str, str], columns: dict[str, int],
                student_no: str, result: Returned) -> tuple[dict[str, Status], list[str]]:
    """One 办理 row's step cells: what each readable cell states, and the steps whose box came back empty; an
    unreadable mark is an anomaly with its cell."""
    ticks: dict[str, Status] = {}
    blank: list[str] = []
    for name, code in steps.items():
        col = columns.get(name)
        if col is None:
            continue
        value = values[col] if col < len(values) else None
        if sheet.is_blank(offset, col, value):
            blank.append(code)
        status, reason = sheet.status(offset, col, value)
        if status is None:
            result.anomalies.append(Anomaly("bad_mark", reason, sheet.name, sheet.ref(offset, col),
                                            student_no, code, cell_text(value)))
        else:
            ticks[code] = status
    return ticks, blank


def _read_batch(sheet: Sheet, mode: str, steps: dict[str, str], result: Returned) -> None:
    first = GROUP_HEADERS.get(mode, "")
    header_row = _find_header(sheet.grid, first)
    if header_row is None:
        result.anomalies.append(Anomaly("header_missing", f"批量表找不到表头“{first}”", sheet.name))
        return
    headers = [cell_text(v) for v in sheet.grid[header_row]]
    step_cols = {steps[h]: i for i, h in enumerate(headers) if h in steps}
    group_col = headers.index(first)
    key_col = headers.index(ROW_KEY_HEADER) if ROW_KEY_HEADER in headers else None
    _check_key_column(sheet, {h: i for i, h in enumerate(headers)}, result)
    suffix = clean_text(COUNT_SUFFIX)  # headers are read through clean_text (NFKC: （） → ())
    count_cols = {steps[h[:-len(suffix)]]: i for i, h in enumerate(headers)
                  if h.endswith(suffix) and h[:-len(suffix)] in steps}
    blanks: dict[str, list[int]] = {code: [] for code in step_cols}
    outside: set[str] = set()
    no_box: set[str] = set()  # columns with a value in a cell issued without a box (no member to tick)
    for offset, values in enumerate(sheet.grid[header_row + 1:], start=header_row + 1):
        group = cell_text(values[group_col]) if group_col < len(values) else ""
        if not group:
            outside.update(code for code, col in step_cols.items()
                           if col < len(values) and not sheet.is_blank(offset, col, values[col]))
            continue
        key = ""
        if key_col is not None and key_col < len(values):
            key = sheet.text(offset, key_col, values[key_col])[:64]
        result.batch_rows.append((mode, group, key, f"A{offset + 1}"))
        for code, col in step_cols.items():
            value = values[col] if col < len(values) else None
            count = count_cols.get(code)
            total = cell_text(values[count]).partition("/")[2] if count is not None and count < len(values) else ""
            if total == "0" and not sheet.is_blank(offset, col, value):
                no_box.add(code)
            if value is None or value == "":
                if sheet.is_blank(offset, col, value) and total not in ("", "0"):
                    blanks[code].append(offset)  # a box issued here came back empty
                continue
            mark, reason = sheet.mark(offset, col, value)
            ref = sheet.ref(offset, col)
            if mark is None:
                result.anomalies.append(Anomaly("bad_mark", reason, sheet.name, ref, step=code,
                                                value=cell_text(value)))
            else:
                result.batch.append(BatchTick(mode, group, code, mark, ref, key))
    for code, col in step_cols.items():
        # on batch sheets every emptied box counts as a moved column: a batch box passes a whole room or class, so a
        # blank cannot be allowed to hide a shift (and nobody loses anything by a Delete there: a batch untick
        # never revokes)
        if column_shifted(value_below_rows=code in outside, last_box_empty=bool(blanks[code]),
                          value_where_no_box=code in no_box):
            result.anomalies.append(Anomaly("column_shifted", SHIFTED, sheet.name, column_name(col), step=code))






def _read_waivers(sheet: Sheet, steps: dict[str, str], result: Returned) -> None:
    header_row = _find_header(sheet.grid, "学号")
    if header_row is None:
        result.anomalies.append(Anomaly("header_missing", "找不到表头行（含“学号”的行）", sheet.name))
        return
    headers = [cell_text(v) for v in sheet.grid[header_row]]
    if any(h not in headers for h in ("学号", "离校步骤", "解除限制", "理由")):
        result.anomalies.append(Anomaly("column_missing", f"解除限制表缺少列（应有 {'、'.join(WAIVER_HEADERS)}）",
                                        sheet.name))
        return
    col = {h: headers.index(h) for h in ("学号", "离校步骤", "解除限制", "理由", "凭证") if h in headers}
    _check_key_column(sheet, {h: i for i, h in enumerate(headers)}, result)
    key_col = headers.index(ROW_KEY_HEADER) if ROW_KEY_HEADER in headers else None
    box = col["解除限制"]
    blanks: list[int] = []
    outside = False
    for offset, values in enumerate(sheet.grid[header_row + 1:], start=header_row + 1):
        def get(name: str, row: list[Any] = values) -> Any:
            return row[col[name]] if name in col and col[name] < len(row) else None
        student_no = cell_text(get("学号"))
        if not student_no:
            outside = outside or (box < len(values) and not sheet.is_blank(offset, box, values[box]))
            continue
        result.waiver_students.append(student_no[:64])
        step = steps.get(cell_text(get("离校步骤")), "")
        ref = sheet.ref(offset, box)
        if not step:
            result.anomalies.append(Anomaly("unknown_step", f"未知的离校步骤“{cell_text(get('离校步骤'))}”",
                                            sheet.name, ref, student_no))
            continue
        blank = sheet.is_blank(offset, box, get("解除限制"))
        if blank:
            blanks.append(offset)
        mark, reason = sheet.mark(offset, box, get("解除限制"))
        if mark is None:
            result.anomalies.append(Anomaly("bad_mark", reason, sheet.name, ref, student_no, step,
                                            cell_text(get("解除限制"))))
            continue
        key = sheet.text(offset, key_col, values[key_col])[:64] if key_col is not None and key_col < len(values) else ""
        result.waivers.append(WaiverTick(student_no, step, mark, remark_text(get("理由"))[:MAX_TEXT], ref, key,
                                         blank, remark_text(get("凭证"))[:MAX_TEXT]))
    if column_shifted(value_below_rows=outside, last_box_empty=bool(blanks)):  # as on batch sheets: every blank
        result.anomalies.append(Anomaly("column_shifted", SHIFTED, sheet.name, column_name(box)))


def _check_key_column(sheet: Sheet, columns: dict[str, int], result: Returned) -> None:
    """A workbook issued with 行校验 keys must still have the column (the merge then checks every row)."""
    if (result.token.payload or {}).get("row_keys") and ROW_KEY_HEADER not in columns:
        result.anomalies.append(Anomaly("row_key_missing", f"找不到“{ROW_KEY_HEADER}”列（被删除或改名）", sheet.name))
