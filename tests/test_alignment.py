"""Every tick lands on the student its row was issued for, or is refused: row keys, unclear cells, revocations."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lixiao.core.merge import MergeInput, plan_merge
from lixiao.core.model import Status
from lixiao.core.signing import row_key, row_secret
from lixiao.sync.datafolder import open_folder
from lixiao.sync.officesim import sort_columns
from lixiao.workbooks.reader import read_returned
from lixiao.workbooks.writer import HEADER_ROW, MAIN_SHEET, ROW_KEY_HEADER

from .conftest import Cli, cohort_folder, drop, edit, key_of, outbox, rows, statuses, sync


def save(book: Any) -> bytes:
    """The workbook's bytes as openpyxl writes them."""
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def columns_of(ws: Any) -> dict[str, int]:
    """Header title → 1-based column of a ticking sheet."""
    head = HEADER_ROW + 1
    return {ws.cell(head, c).value: c for c in range(1, ws.max_column + 1) if ws.cell(head, c).value}


def settings_file(cli: Cli, **values: int) -> None:
    """Append a [sync] section to the folder's lixiao.toml."""
    text = (cli.data / "lixiao.toml").read_text("utf-8")
    body = "".join(f"{k} = {v}\n" for k, v in values.items())
    (cli.data / "lixiao.toml").write_text(text + "\n[sync]\n" + body, "utf-8")


# -- cells --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mark", ["x", "X", "×", "✗"])
def test_a_cross_is_refused_not_read_as_a_tick(issued: Cli, mark: str) -> None:
    """x, X, × and ✗ mean "no" to Chinese staff: the cell is refused with a hint, never ticked or unticked."""
    returned = read_returned(edit(outbox(issued, "utilities")[0], {("0803010103", "清理电费"): mark}), key_of(issued))
    assert "electricity" not in returned.rows["0803010103"].ticks
    [anomaly] = returned.anomalies
    assert anomaly.code == "bad_mark" and "含义不明" in anomaly.reason and "√" in anomaly.reason


@pytest.mark.parametrize("error", ["#N/A", "#REF!", "#VALUE!"])
def test_error_values_on_passed_cells_are_refused_not_revoked(cli: Cli, error: str) -> None:
    """A pasted #N/A over a ticked box is refused with the error named; the passed step stays passed."""
    cli("set", "0803010103", "electricity", "passed")
    cli("issue", "--checkpoint", "utilities")
    data = edit(outbox(cli, "utilities")[0], {("0803010103", "清理电费"): error})
    assert read_returned(data, key_of(cli)).anomalies[0].code == "bad_mark"
    drop(cli, "err.xlsx", data)
    [item] = sync(cli)["files"]
    assert (item["applied"], item["refused"]) == (0, 1)
    assert statuses(cli)[("0803010103", "electricity")] == ("passed", 1)
    [(reason,)] = rows(cli, "SELECT reason FROM refused_ticks")
    assert error in reason and "错误值" in reason


def test_a_cleared_cell_is_not_a_revocation_but_false_is(cli: Cli) -> None:
    """Emptying a ticked cell is refused as unclear; FALSE in another ticked cell revokes it."""
    cli("set", "0803010103", "electricity", "passed")
    cli("set", "0803010104", "electricity", "passed")
    cli("issue", "--checkpoint", "utilities")
    drop(cli, "u.xlsx", edit(outbox(cli, "utilities")[0], {("0803010103", "清理电费"): None,
                                                            ("0803010104", "清理电费"): False}))
    [item] = sync(cli)["files"]
    assert (item["applied"], item["refused"]) == (1, 1)
    assert statuses(cli)[("0803010103", "electricity")] == ("passed", 1)
    assert statuses(cli)[("0803010104", "electricity")] == ("pending", 2)
    assert "清空" in rows(cli, "SELECT reason FROM refused_ticks")[0][0]


# -- row alignment ------------------------------------------------------------------------------------------


@pytest.fixture
def cohort(tmp_path: Path) -> Cli:
    """A 40-student folder with every workbook issued; a few electricity steps already passed."""
    from click.testing import CliRunner

    folder = cohort_folder(tmp_path / "cohort", 40)
    tool = Cli(folder, CliRunner())
    for no in [s.student_no for s in open_folder(folder).store.students()][:3]:
        assert tool("set", no, "electricity", "passed").exit_code == 0
    assert tool("issue").exit_code == 0
    return tool


def utilities(cli: Cli) -> tuple[Any, Any]:
    """The latest utilities workbook loaded with openpyxl, and its 办理 sheet."""
    book = openpyxl.load_workbook(outbox(cli, "utilities")[-1])
    return book, book[MAIN_SHEET]


def test_issued_rows_carry_a_row_key_in_the_last_column(cohort: Cli) -> None:
    """Each 办理 row ends with its 学号's signed key; the autofilter covers it so a filter sort moves it too."""
    book, ws = utilities(cohort)
    cols = columns_of(ws)
    assert max(cols.values()) == cols[ROW_KEY_HEADER]
    payload = json.loads(book["_lixiao"]["A2"].value)
    secret = row_secret(key_of(cohort), payload["workbook_id"])
    for r in range(HEADER_ROW + 2, ws.max_row + 1):
        assert ws.cell(r, cols[ROW_KEY_HEADER]).value == row_key(secret, ws.cell(r, 1).value)
    assert ws.auto_filter.ref.split(":")[1].rstrip("0123456789") == openpyxl.utils.get_column_letter(
        cols[ROW_KEY_HEADER])


def test_sorting_only_id_and_name_refuses_the_whole_file(cohort: Cli) -> None:
    """学号+姓名 sorted alone (the issue's case): nothing is applied or revoked; the file is rejected with advice."""
    book, ws = utilities(cohort)
    cols = columns_of(ws)
    for r in range(HEADER_ROW + 2, ws.max_row + 1):
        if ws.cell(r, cols["清理电费"]).value is False and r % 2:
            ws.cell(r, cols["清理电费"]).value = True
    sort_columns(ws, 1, 2, by=2)
    before = statuses(cohort)
    drop(cohort, "水电.xlsx", save(book))
    [item] = sync(cohort)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("misaligned：")
    assert "选中整行" in item["reasons"][0]
    assert statuses(cohort) == before
    assert (cohort.data / "rejected" / "水电.xlsx.说明.txt").exists()


def test_sorting_whole_rows_merges_exactly_like_unsorted(cohort: Cli) -> None:
    """A sort over every column (the filter button, or whole rows selected) changes nothing about the result."""
    book, ws = utilities(cohort)
    cols = columns_of(ws)
    for r in range(HEADER_ROW + 2, ws.max_row + 1, 3):
        if ws.cell(r, cols["清理电费"]).value is False:
            ws.cell(r, cols["清理电费"]).value = True
    sort_columns(ws, 1, ws.max_column, by=cols["姓名"], reverse=True)
    drop(cohort, "sorted.xlsx", save(book))
    [item] = sync(cohort)["files"]
    assert item["outcome"] == "merged" and item["refused"] == 0 and item["applied"] > 5


def test_a_few_misaligned_rows_are_refused_alone(cohort: Cli) -> None:
    """Two rows whose 学号 cells were swapped are refused whole; the other rows' ticks apply."""
    book, ws = utilities(cohort)
    cols = columns_of(ws)
    a, b, c = HEADER_ROW + 6, HEADER_ROW + 7, HEADER_ROW + 9
    ws.cell(a, 1).value, ws.cell(b, 1).value = ws.cell(b, 1).value, ws.cell(a, 1).value
    for r in (a, b, c):
        ws.cell(r, cols["清理电费"]).value = True
    good = ws.cell(c, 1).value
    drop(cohort, "swap.xlsx", save(book))
    [item] = sync(cohort)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 1, 2)
    assert statuses(cohort)[(good, "electricity")][0] == "passed"
    reasons = [r[0] for r in rows(cohort, "SELECT reason FROM refused_ticks")]
    assert all("行校验" in r and "整行未作任何变更" in r for r in reasons)


def test_deleting_the_row_key_column_rejects_the_file(cohort: Cli) -> None:
    """Without its 行校验 column a keyed workbook cannot prove its rows: rejected, nothing applied."""
    book, ws = utilities(cohort)
    ws.delete_cols(columns_of(ws)[ROW_KEY_HEADER])
    ws.cell(HEADER_ROW + 2, columns_of(ws)["清理电费"]).value = True
    drop(cohort, "nokey.xlsx", save(book))
    [item] = sync(cohort)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("row_key_missing：")


def test_batch_sheet_group_column_sorted_alone_is_refused(cohort: Cli) -> None:
    """On 按宿舍, the room names sorted apart from their boxes: the moved rows' ticks are refused, none applied."""
    book = openpyxl.load_workbook(outbox(cohort, "utilities")[-1])
    ws = book["按宿舍"]
    cols = columns_of(ws)
    box = max(c for t, c in cols.items() if t == "清理电费")
    for r in (HEADER_ROW + 2, HEADER_ROW + 3):
        ws.cell(r, box).value = True
    sort_columns(ws, 1, 1, by=1, reverse=True)
    before = statuses(cohort)
    drop(cohort, "rooms.xlsx", save(book))
    [item] = sync(cohort)["files"]
    assert (item["outcome"], item["applied"], item["refused"]) == ("merged", 0, 2)
    assert statuses(cohort) == before
    assert all("分组名与勾选格已错开" in r for (r,) in rows(cohort, "SELECT reason FROM refused_ticks"))


def test_many_revocations_are_held_until_the_coordinator_confirms(cohort: Cli) -> None:
    """The tick column sorted alone moves passed ticks: over the limit the return is held, nothing applied;
    `sync --confirm` applies it."""
    settings_file(cohort, max_revocations=1)
    book, ws = utilities(cohort)
    cols = columns_of(ws)
    sort_columns(ws, cols["清理电费"], cols["清理电费"], by=cols["清理电费"])  # FALSE before TRUE: ticks move down
    drop(cohort, "moved.xlsx", save(book))
    before = statuses(cohort)
    [item] = sync(cohort)["files"]
    assert item["outcome"] == "held" and "撤销 3 个" in item["reasons"][0]
    assert statuses(cohort) == before
    held = cohort.data / "held" / "moved.xlsx"
    assert held.exists() and (cohort.data / "held" / "moved.xlsx.说明.txt").exists()
    receipt = next((cohort.data / "receipts").glob("*待确认*-回执.xlsx"))
    summary = {r[0].value: r[1].value for r in openpyxl.load_workbook(receipt)["概要"].iter_rows()}
    assert summary["结果"] == "待协调人确认（尚未生效）"
    result = cohort("sync", "--json", "--confirm", str(held))
    [item] = json.loads(result.output)["files"]
    assert item["outcome"] == "merged" and item["applied"] >= 3
    assert not held.exists()
    assert sum(v[0] == "passed" for v in statuses(cohort).values()) == 3
    assert cohort("verify").exit_code == 0


# -- property: partial sorts and pastes never change a student who was not ticked for -----------------------


@pytest.fixture(scope="module")
def issued_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 30-student folder, its utilities workbook issued, and that workbook."""
    from click.testing import CliRunner

    from lixiao.sync.cli import main

    folder = cohort_folder(tmp_path_factory.mktemp("prop") / "d", 30)
    runner = CliRunner()
    assert runner.invoke(main, ["--data", str(folder), "issue", "--checkpoint", "utilities"]).exit_code == 0
    return folder, next((folder / "outbox" / "utilities").glob("*.xlsx"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["sort", "paste", "shift"]))
def test_partial_permutations_never_change_an_unticked_student(issued_cohort: tuple[Path, Path], seed: int,
                                                                kind: str) -> None:
    """Staff tick some rows, then sort, paste over or shift a random block of columns that holds 学号, 姓名,
    身份证号, 宿舍 or 行校验: every applied change is a tick staff made on that very student's row.

    (A block of tick columns alone carries nothing that says whose tick it is: docs/security.md says what
    guards that case — the revocation limit — and what it cannot see.)"""
    folder, source = issued_cohort
    rng = random.Random(seed)
    book = openpyxl.load_workbook(source)
    ws = book[MAIN_SHEET]
    cols = columns_of(ws)
    top, bottom, width = HEADER_ROW + 2, ws.max_row, ws.max_column
    steps = [c for t, c in cols.items() if t in ("清理电费", "清理宿舍物品") or t.startswith("清理")]
    intended: set[tuple[str, int]] = set()
    for r in range(top, bottom + 1):
        for c in steps:
            if ws.cell(r, c).value is False and rng.random() < 0.4:
                ws.cell(r, c).value = True
                intended.add((ws.cell(r, 1).value, c))
    binding = [cols[t] for t in ("学号", "姓名", "身份证号", "宿舍", ROW_KEY_HEADER)]
    anchor = rng.choice(binding)
    first, last = rng.randint(1, anchor), rng.randint(anchor, width)
    if (first, last) == (1, width):
        first, last = (2, width) if rng.random() < 0.5 else (1, width - 1)
    if kind == "sort":
        sort_columns(ws, first, last, by=rng.randint(first, last), reverse=rng.random() < 0.5)
    else:
        a = rng.randint(top, bottom - 1)
        length = rng.randint(1, bottom - a)
        b = rng.randint(top, bottom - length + 1) if kind == "paste" else min(bottom - length + 1, a + 1)
        block = [[ws.cell(r, c).value for c in range(first, last + 1)] for r in range(a, a + length)]
        for offset, values in enumerate(block):
            for index, value in enumerate(values):
                ws.cell(b + offset, first + index).value = value
    returned = read_returned(save(book), key_of_folder(folder))
    opened = open_folder(folder)
    try:
        payload = returned.token.payload or {}
        workbook = opened.store.workbook(payload["workbook_id"]) or {}
        secret = row_secret(key_of_folder(folder), workbook["id"])
        plan = plan_merge(opened.flow, opened.year, "utilities", json.loads(workbook["baseline"]),
                          MergeInput(returned.rows, returned.batch, returned.duplicates, returned.waivers),
                          {s.student_no: s for s in opened.store.students()}, opened.store.all_status_rows(), {},
                          lambda ident: row_key(secret, ident))
        names = {t: c for t, c in cols.items()}
        step_col = {code: names[name] for name, code in payload["steps"].items()}
        for change in plan.changes:
            assert change.new is Status.PASSED and (change.student_no, step_col[change.step]) in intended
    finally:
        opened.close()


def key_of_folder(folder: Path) -> bytes:
    """A data folder's signing key."""
    return bytes.fromhex((folder / ".secret").read_text())
