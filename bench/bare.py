"""The bare side of P1: XlsxWriter alone writing the cells `lixiao issue` writes."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import xlsxwriter

from lixiao.sync.datafolder import open_folder
from lixiao.sync.issuing import plan_each


def bare_issue(plans_root: Path) -> int:
    """Bare XlsxWriter writing the same cells as `lixiao issue`: on 办理 the identity text, 前置条件, checkboxes,
    备注 and an 8-character row key (keyed BLAKE2, one unique string a row like 行校验); the batch sheets' group,
    count, member, count-per-step and checkbox cells; the 可领证名单 rows of certificate desks; the special desk's
    rows. Planning is timed on both sides; signing, 说明 and formats are lixiao's own work."""
    from lixiao.core.clearance.certificates import is_certificate_desk, ready_list

    folder = open_folder(plans_root)
    out = Path(tempfile.mkdtemp(prefix="bare-"))
    cells = 0
    plans = (plan for checkpoint in plan_each(folder, [], None) for plan in checkpoint)  # as lixiao issue plans
    for number, plan in enumerate(plans):
        book = xlsxwriter.Workbook(str(out / f"{number}.xlsx"))
        if plan.kind == "office" and is_certificate_desk(plan.checkpoint):
            ready = book.add_worksheet()
            line = 0
            for group in ready_list(plan).classes:
                ready.write_string(line, 0, group.name)
                for entry in group.students:
                    line += 1
                    for c, value in enumerate((entry.student.student_no, entry.student.name,
                                               entry.student.class_group, entry.pending_names)):
                        ready.write_string(line, c, value)
                line += 1
        sheet = book.add_worksheet()
        box = book.add_format()
        for r, row in enumerate(plan.rows, start=1):
            for c, value in enumerate(row.identity):
                sheet.write_string(r, c, value)
            first = len(row.identity)
            sheet.write_string(r, first, row.prerequisite)
            for i, cell in enumerate(row.cells):
                if cell.applicable:
                    sheet.insert_checkbox(r, first + 1 + i, cell.ticked, box)
            sheet.write_string(r, first + 1 + len(row.cells), row.remark)
            sheet.write_string(r, first + 2 + len(row.cells), _key(row.student.student_no))
            cells += len(row.identity) + len(row.cells) + 3
        for groups in plan.groups.values():
            batch = book.add_worksheet()
            for r, group in enumerate(groups, start=1):
                batch.write_string(r, 0, group.key)
                batch.write_string(r, 1, str(len(group.student_nos)))
                batch.write_string(r, 2, "、".join(group.names))
                for i, ((done, total), ticked) in enumerate(zip(group.counts, group.ticked, strict=True)):
                    batch.write_string(r, 3 + 2 * i, f"{done}/{total}")
                    batch.insert_checkbox(r, 4 + 2 * i, ticked, box)
                batch.write_string(r, 3 + 2 * len(group.counts), _key(f"batch|{group.key}"))
        for r, w in enumerate(plan.waiver_rows, start=1):
            for c, value in enumerate((w.student.student_no, w.student.name, w.student.college, w.student.class_group,
                                       w.checkpoint_title, w.step.name, w.status.marked, w.note)):
                sheet.write_string(r, c, value)
            sheet.insert_checkbox(r, 9, w.waived, box)
            sheet.write_string(r, 10, w.reason)
        book.close()
    folder.close()
    shutil.rmtree(out)
    return cells


def _key(ident: str) -> str:
    """An 8-character row key, one distinct string per row as 行校验 is."""
    return hashlib.blake2s(ident.encode(), key=b"bench", digest_size=4).hexdigest()
