"""Simulated office staff for ``lixiao demo``: tick most eligible cells, use batch rows, make honest mistakes."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import openpyxl
from openpyxl.worksheet.worksheet import Worksheet

from lixiao.core.clearance.issuance import BATCH_SHEETS
from lixiao.workbooks.layout import HEADER_ROW, MAIN_SHEET, PREREQ_HEADER

OPERATORS = {"college": "学院离校点·{}老师", "student_affairs": "学工处·刘老师", "utilities": "水电中心·王师傅",
             "dorm": "宿管中心·陈阿姨", "network": "网络中心·赵工", "certificates": "学院证件·{}老师",
             "registrar": "教务处·孙老师"}
SURNAMES = "张李王刘陈杨黄赵周吴"


@dataclass(frozen=True, slots=True)
class Simulated:
    """One returned file the simulated office produced, and what it did differently."""

    path: Path
    office: str
    note: str


def _header(ws: Worksheet, first: str) -> tuple[int, dict[str, int]]:
    row = HEADER_ROW + 1
    headers = {ws.cell(row, c).value: c for c in range(1, ws.max_column + 1) if ws.cell(row, c).value}
    if first not in headers:
        raise ValueError(f"no {first} header")
    return row, headers


def _save(book: openpyxl.Workbook) -> bytes:
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def sort_columns(ws: Worksheet, first: int, last: int, by: int, reverse: bool = False) -> None:
    """Sort the data rows of columns first..last (1-based) by column ``by``, as a spreadsheet sorts a selection
    ("continue with the current selection"): every cell outside those columns stays where it is."""
    top, bottom = HEADER_ROW + 2, ws.max_row
    block = [[ws.cell(r, c).value for c in range(first, last + 1)] for r in range(top, bottom + 1)]
    block.sort(key=lambda values: str(values[by - first] or ""), reverse=reverse)
    for offset, values in enumerate(block):
        for index, value in enumerate(values):
            ws.cell(top + offset, first + index).value = value


class _TickOptions(TypedDict, total=False):
    """The ways a simulated clerk departs from plain ticking (tick_workbook's keyword options)."""

    mistakes: bool
    typed: bool
    sort_by: str
    use_batch: bool
    partial_sort: bool


def tick_workbook(source: Path, rng: random.Random, rate: float, operator: str, *, mistakes: bool = False,
                  typed: bool = False, sort_by: str = "", use_batch: bool = False,
                  partial_sort: bool = False) -> bytes:
    """Tick ``rate`` of the eligible cells (prerequisites met) of a workbook, as a staff member would."""
    book = openpyxl.load_workbook(source)
    ws = book[MAIN_SHEET]
    ws["B2"] = operator
    head, headers = _header(ws, "学号")
    prereq = headers[PREREQ_HEADER]
    steps = [c for title, c in headers.items() if prereq < c < headers["备注"]]
    batches = [book[name] for name in book.sheetnames if name in BATCH_SHEETS.values()]
    if use_batch and batches:
        batch = batches[0]
        bhead, bheaders = _header(batch, batch.cell(HEADER_ROW + 1, 1).value)
        boxes = [c for t, c in bheaders.items() if "（" not in str(t) and c > 3]
        for r in range(bhead + 1, batch.max_row + 1):
            for c in boxes:
                if batch.cell(r, c).value is False and rng.random() < rate:
                    batch.cell(r, c).value = True
        rate = rate / 3  # the batch sheet did most of the work
    for r in range(head + 1, ws.max_row + 1):
        met = ws.cell(r, prereq).value == "已满足"
        for c in steps:
            if ws.cell(r, c).value is not False:
                continue  # not applicable (blank) or already ticked
            if (met and rng.random() < rate) or (mistakes and not met and rng.random() < 0.05):
                ws.cell(r, c).value = rng.choice(("√", "✓", "是")) if typed and rng.random() < 0.3 else True
    if partial_sort:  # 学号 and 姓名 selected alone and sorted by 姓名: every other cell stays put
        sort_columns(ws, 1, 2, by=2)
    if sort_by:
        column = headers[sort_by]
        rows = [[ws.cell(r, c).value for c in range(1, ws.max_column + 1)] for r in range(head + 1, ws.max_row + 1)]
        rows.sort(key=lambda values: str(values[column - 1] or ""))
        for offset, values in enumerate(rows, start=head + 1):
            for c, value in enumerate(values, start=1):
                ws.cell(offset, c).value = value
    return _save(book)


def libreoffice_resave(data: bytes) -> bytes | None:
    """The same file opened and saved by a real LibreOffice (None when LibreOffice is not installed)."""
    soffice = shutil.which("soffice")
    if not soffice:
        return None
    with tempfile.TemporaryDirectory(prefix="lixiao-demo-lo-") as work:
        source = Path(work) / "in.xlsx"
        source.write_bytes(data)
        done = subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{work}/profile",
                               "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", f"{work}/out", str(source)],
                              capture_output=True, timeout=180, check=False)
        out = Path(work) / "out" / "in.xlsx"
        return out.read_bytes() if done.returncode == 0 and out.exists() else None


def simulate_round(root: Path, inbox: Path, checkpoints: list[str], rng: random.Random,
                   libreoffice: bool = True, first: bool = False,
                   places: dict[str, list[tuple[Path, Path]]] | None = None) -> list[Simulated]:
    """Every office of ``checkpoints`` returns its latest workbook; some with mistakes. ``places``: per
    checkpoint, the (folder it takes workbooks from, folder it returns them to) of each of its offices — a
    shared folder's 待办/ and 交回/; by default outbox/<checkpoint>/ and ``inbox``."""
    made: list[Simulated] = []
    lo_done = not libreoffice
    for code in checkpoints:
        index = -1
        for source, target_dir in (places or {}).get(code, [(root / "outbox" / code, inbox)]):
            if not source.is_dir():
                continue
            latest: dict[str, Path] = {}
            for path in sorted(source.glob("*.xlsx")):
                latest[path.name.rsplit("-第", 1)[0]] = path  # the highest generation of each scope
            for path in sorted(latest.values()):
                index += 1
                data, notes, lo_done = _tick_one(code, index, path, rng, first, lo_done)
                name = f"{path.stem.split('-', 1)[1]}-已办.xlsx"
                target = target_dir / name
                target.write_bytes(data)
                made.append(Simulated(target, code, "、".join(notes)))
                if code == "utilities" and index == 0:
                    copy = target_dir / f"{path.stem.split('-', 1)[1]}-已办(1).xlsx"
                    copy.write_bytes(data)
                    made.append(Simulated(copy, code, "同一文件重复交回"))
    return made


def _tick_one(code: str, index: int, path: Path, rng: random.Random, first: bool,
              lo_done: bool) -> tuple[bytes, list[str], bool]:
    """One office's ticking of one workbook, with the demo's planted mistakes."""
    operator = OPERATORS.get(code, "经办人").format(SURNAMES[index % len(SURNAMES)])
    notes = []
    options: _TickOptions = {"use_batch": code in ("utilities", "dorm", "student_affairs")}
    if code == "dorm" and index == 0:
        options["sort_by"] = "宿舍"
        notes.append("按宿舍排序")
    if code == "college" and index == 0:
        options["typed"] = True
        notes.append("部分格子手工输入 √ ✓ 是")
    if code == "college" and index == 1 and first:
        options["partial_sort"] = True
        notes.append("只选中学号、姓名两列排序（错行：整份文件被拒绝，须重新办理）")
    if code == "certificates" and index == 0:
        options["mistakes"] = True
        notes.append("误勾了前置条件未满足的学生")
    data = tick_workbook(path, rng, 0.9, operator, **options)
    if not lo_done and code == "college":
        resaved = libreoffice_resave(data)
        if resaved:
            data = resaved
            notes.append("用 LibreOffice 保存")
        lo_done = True
    return data, notes, lo_done
