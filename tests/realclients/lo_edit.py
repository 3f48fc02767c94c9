"""Edit workbooks in a real LibreOffice through UNO, like a staff member would (run with Debian's python3).

Usage: python3 lo_edit.py JOBS.json — each job: {"input", "output", "edits": [...], "sort": {...}, "operator"}.
An edit: {"sheet", "key", "column", "value"}: find the row whose first column equals key, the column by its
header text, and enter the value (true/false as a typed boolean, a string as typed text).
A deletion: "delete_rows": [{"sheet", "key"}] removes the whole row of that key, "delete_columns": [{"sheet",
"column"}] the whole column of that header (as the menu's Delete Rows / Delete Columns; applied before the edits).
A sort: {"sheet", "by", "ascending", "columns"}: sort the data rows by the column titled "by" — every used
column (whole rows), or only the columns from "columns"[0] to "columns"[1] (a selection of some columns,
"continue with the current selection").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uno  # type: ignore[import-not-found]
from com.sun.star.beans import PropertyValue  # type: ignore[import-not-found]
from com.sun.star.connection import NoConnectException  # type: ignore[import-not-found]

HEADER_FIRST = ("学号", "班级", "宿舍", "院系")


def prop(name: str, value: object) -> PropertyValue:
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def start_office(profile: Path, pipe: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["soffice", "--headless", "--invisible", "--nologo", "--norestore", "--nodefault",
         f"-env:UserInstallation=file://{profile}", f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext"],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(pipe: str) -> object:
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    for _ in range(120):
        try:
            ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            return ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        except NoConnectException:
            time.sleep(0.25)
    raise SystemExit("LibreOffice did not start")


def header_row(sheet: object) -> int:
    for row in range(15):
        for col in range(3):
            if sheet.getCellByPosition(col, row).getString() in HEADER_FIRST:
                return row
    raise SystemExit("no header row")


def used_rows(sheet: object) -> int:
    cursor = sheet.createCursor()
    cursor.gotoEndOfUsedArea(False)
    return cursor.getRangeAddress().EndRow + 1


def find_column(sheet: object, head: int, title: str) -> int:
    for col in range(200):
        if sheet.getCellByPosition(col, head).getString() == title:
            return col
    raise SystemExit(f"no column {title}")


def find_row(sheet: object, head: int, key: str) -> int:
    for row in range(head + 1, used_rows(sheet)):
        if sheet.getCellByPosition(0, row).getString() == key:
            return row
    raise SystemExit(f"no row {key}")


def apply(document: object, job: dict) -> None:
    sheets = document.getSheets()
    formats = document.getNumberFormats()
    locale = uno.createUnoStruct("com.sun.star.lang.Locale")
    boolean = formats.getStandardFormat(uno.getConstantByName("com.sun.star.util.NumberFormat.LOGICAL"), locale)
    if job.get("operator"):
        sheets.getByName(job.get("operator_sheet", "办理")).getCellByPosition(1, 1).setString(job["operator"])
    for gone in job.get("delete_rows", []):
        sheet = sheets.getByName(gone["sheet"])
        sheet.getRows().removeByIndex(find_row(sheet, header_row(sheet), gone["key"]), 1)
    for gone in job.get("delete_columns", []):
        sheet = sheets.getByName(gone["sheet"])
        sheet.getColumns().removeByIndex(find_column(sheet, header_row(sheet), gone["column"]), 1)
    for edit in job.get("edits", []):
        sheet = sheets.getByName(edit["sheet"])
        head = header_row(sheet)
        cell = sheet.getCellByPosition(find_column(sheet, head, edit["column"]), find_row(sheet, head, edit["key"]))
        value = edit["value"]
        if isinstance(value, bool):
            cell.setValue(1 if value else 0)
            cell.NumberFormat = boolean  # what typing TRUE into a cell produces
        else:
            cell.setString(value)
    sort = job.get("sort")
    if sort:
        sheet = sheets.getByName(sort["sheet"])
        head = header_row(sheet)
        col = find_column(sheet, head, sort["by"])
        cursor = sheet.createCursor()
        cursor.gotoEndOfUsedArea(False)
        first_col, last_col = 0, cursor.getRangeAddress().EndColumn
        if sort.get("columns"):
            first_col, last_col = (find_column(sheet, head, title) for title in sort["columns"])
        data = sheet.getCellRangeByPosition(first_col, head + 1, last_col, used_rows(sheet) - 1)
        sheet.unprotect("")  # sorting a protected sheet through the API silently does nothing
        field = uno.createUnoStruct("com.sun.star.table.TableSortField")
        field.Field = col - first_col  # relative to the sorted range
        field.IsAscending = bool(sort.get("ascending", True))
        data.sort((prop("SortFields", uno.Any("[]com.sun.star.table.TableSortField", (field,))),
                   prop("ContainsHeader", False)))


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    work = Path(tempfile.mkdtemp(prefix="lixiao-lo-"))
    profile = work / "profile"  # must not exist yet
    pipe = f"lixiao{os.getpid()}"
    office = start_office(profile, pipe)
    try:
        desktop = connect(pipe)
        for index, job in enumerate(jobs):
            private = work / f"in{index}.xlsx"  # a private copy: a stale lock file would make the load fail
            shutil.copy(job["input"], private)
            document = desktop.loadComponentFromURL(uno.systemPathToFileUrl(str(private)), "_blank", 0,
                                                    (prop("Hidden", True),))
            if document is None:
                raise SystemExit(f"LibreOffice could not load {job['input']}")
            apply(document, job)
            out = work / f"out{index}.xlsx"
            document.storeToURL(uno.systemPathToFileUrl(str(out)),
                                (prop("FilterName", "Calc MS Excel 2007 XML"), prop("Overwrite", True)))
            document.close(True)
            shutil.copy(out, job["output"])
        desktop.terminate()
    finally:
        try:
            office.wait(timeout=20)
        except subprocess.TimeoutExpired:
            office.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
