"""Rows and columns deleted in a real LibreOffice: the far dimension and the empty last row it then writes are
formatting, not an attack; the return merges and every tick lands on its own student."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main
from lixiao.workbooks.reader import read_returned

from ..conftest import cohort_folder
from .test_libreoffice import key, run_jobs

pytestmark = pytest.mark.slow


def _sheet_xml(path: Path) -> bytes:
    return zipfile.ZipFile(io.BytesIO(path.read_bytes())).read("xl/worksheets/sheet1.xml")


def _sync(folder: Path, path: Path) -> dict[str, Any]:
    target = folder / "inbox" / path.name
    target.write_bytes(path.read_bytes())
    result = CliRunner().invoke(main, ["--data", str(folder), "sync", str(target), "--json"])
    [item] = json.loads(result.output)["files"]
    return dict(item)


def _passed(folder: Path) -> set[str]:
    CliRunner().invoke(main, ["--data", str(folder), "export", str(folder / "m.json")])
    return {e["student_no"] for e in json.loads((folder / "m.json").read_text("utf-8"))
            if e["step"] == "electricity" and e["status"] == "passed"}


def test_libreoffice_row_and_column_deletions_merge_with_both_ticks(libreoffice: str, tmp_path: Path) -> None:
    """In a real LibreOffice a clerk deletes the row of a student who is not theirs (LibreOffice then writes
    dimension A1:L1048576 and an empty row 1048576), or deletes the 宿舍 column, ticks two boxes and saves: each
    return merges and both ticks land on the right students; deleting the 行校验 column is refused with what to
    do, and no message calls any of it malicious."""
    runs: dict[str, Any] = {}
    for case, deletion in (("row", "delete_rows"), ("column", "delete_columns"), ("key_column", "delete_columns")):
        folder = cohort_folder(tmp_path / case, 40)
        assert CliRunner().invoke(main, ["--data", str(folder), "issue", "--checkpoint", "utilities"]).exit_code == 0
        source = next((folder / "outbox" / "utilities").glob("*.xlsx"))
        numbers = sorted(read_returned(source.read_bytes(), key(folder)).rows)
        gone = {"row": {"sheet": "办理", "key": numbers[3]}, "column": {"sheet": "办理", "column": "宿舍"},
                "key_column": {"sheet": "办理", "column": "行校验"}}[case]
        chosen = [numbers[7], numbers[20]]
        runs[case] = (folder, chosen, {
            "input": str(source), "output": str(tmp_path / f"{case}.xlsx"), "operator": "水电王老师",
            deletion: [gone], "edits": [{"sheet": "办理", "key": no, "column": "清理电费", "value": True}
                                        for no in chosen]})
    run_jobs([job for _folder, _chosen, job in runs.values()], tmp_path)

    row_file = tmp_path / "row.xlsx"
    xml = _sheet_xml(row_file)  # the shape the issue describes, so that this test cannot pass on another one
    assert re.search(rb'<dimension ref="A1:[A-Z]+1048576"/>', xml) and re.search(rb'<row r="1048576"[^>]*>', xml)
    for case in ("row", "column"):
        folder, chosen, _job = runs[case]
        item = _sync(folder, tmp_path / f"{case}.xlsx")
        assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 2, 0), item
        assert _passed(folder) == set(chosen)
        assert not any("恶意" in reason for reason in item["reasons"]), item
    folder, _chosen, _job = runs["key_column"]
    item = _sync(folder, tmp_path / "key_column.xlsx")
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("row_key_missing："), item
    assert "不要删除列" in item["reasons"][0] and "恶意" not in item["reasons"][0]
    assert _passed(folder) == set()
