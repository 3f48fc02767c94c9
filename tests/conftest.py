"""Shared fixtures: students, flows, initialised data folders and a CLI runner."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner, Result

from lixiao.core.manual.flow import load_preset
from lixiao.core.manual.identity import id_check_digit
from lixiao.core.manual.model import Flow, Student
from lixiao.sync.cli.main import main
from lixiao.workbooks.layout import MAIN_SHEET
from lixiao.workbooks.roster import build_roster, roster_row


def make_id(seq: int, male: bool = True) -> str:
    """A valid 18-character 身份证号 for test student number ``seq``."""
    first17 = f"43010320040101{(seq % 500) * 2 + (1 if male else 0):03d}"
    return first17 + id_check_digit(first17)


def make_student(no: str = "0803010103", **changes: Any) -> Student:
    """A student like the manual's 丁德卫, with any field overridden."""
    base = Student(
        student_no=no, name="丁德卫", gender="男", id_card=make_id(int(no[-3:])), college="机电工程学院",
        major="机械设计制造及其自动化", class_name="08机设1班", dorm="8区-10栋-1层-0121",
    )
    return replace(base, **changes)


@pytest.fixture
def undergrad() -> Flow:
    """The shipped undergraduate flow."""
    return load_preset("undergrad")


@pytest.fixture
def graduate() -> Flow:
    """The shipped graduate flow."""
    return load_preset("graduate")


@dataclass
class Cli:
    """Runs ``lixiao --data DIR …`` in-process and parses JSON output."""

    data: Path
    runner: CliRunner

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(main, ["--data", str(self.data), *args], catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


ROSTER = [
    make_student("0803010103"),
    make_student("0803010104", name="沈睿", national_loan=True),
    make_student("0803010105", name="刘美娟", gender="女", id_card=make_id(105, False), local_loan=True,
                 switch=True, dorm="2区-3栋-3层-0309"),
    make_student("0801020227", name="高鹏", college="能源与安全工程学院", major="安全工程", class_name="08安全2班",
                 withheld_degree=True, withheld_diploma=True, dorm=""),
    make_student("0701020201", name="雷宇", college="能源与安全工程学院", major="安全工程", class_name="07安全2班",
                 previous=True),
]


@pytest.fixture
def roster_file(tmp_path: Path) -> Path:
    """A valid five-student roster .xlsx written with text cells."""
    path = tmp_path / "roster.xlsx"
    path.write_bytes(build_roster([roster_row(s) for s in ROSTER]))
    return path


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once per test session through the CLI: the five-student folder, and the same with every workbook
    issued. Each test gets a copy (≈ 10 ms instead of ≈ 0.3 s of init, import and issue)."""
    root = tmp_path_factory.mktemp("templates")
    roster = root / "roster.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in ROSTER]))
    runner = CliRunner()
    imported, issued = root / "imported", root / "issued"
    assert runner.invoke(main, ["init", str(imported), "--session", "2026届本科毕业生离校"]).exit_code == 0
    # `lixiao sync` regenerating reports/ after each merge was half of this suite's sync time; the tests of that
    # refresh turn it back on (set_settings(..., "sync", reports=True)).
    set_settings(imported, "sync", reports=False)
    result = runner.invoke(main, ["--data", str(imported), "students", "import", str(roster)])
    assert result.exit_code == 0, result.output
    shutil.copytree(imported, issued, symlinks=True)
    result = runner.invoke(main, ["--data", str(issued), "issue"])
    assert result.exit_code == 0, result.output
    return {"imported": imported, "issued": issued}


def set_settings(folder: Path, section: str, **values: object) -> None:
    """Set keys of one section of a data folder's lixiao.toml, keeping everything else (the header comment too)."""
    import tomli_w

    path = folder / "lixiao.toml"
    text = path.read_text("utf-8")
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    settings = tomllib.loads(text)
    settings.setdefault(section, {}).update(values)
    path.write_text(header + tomli_w.dumps(settings), "utf-8")


def _copy_folder(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True)


@pytest.fixture
def cli(tmp_path: Path, roster_file: Path, _templates: dict[str, Path]) -> Cli:
    """An undergrad data folder with the five-student roster imported (a copy of the session's template)."""
    data = tmp_path / "data"
    _copy_folder(_templates["imported"], data)
    return Cli(data, CliRunner())


@pytest.fixture
def pass_all(cli: Cli) -> Callable[[str, list[str]], None]:
    """Pass the given steps of one student through the CLI, asserting each is accepted."""
    def run(no: str, steps: list[str]) -> None:
        for step in steps:
            result = cli("set", no, step, "passed")
            assert result.exit_code == 0, result.output
    return run


def key_of(cli: Cli) -> bytes:
    """The data folder's signing key."""
    return bytes.fromhex((cli.data / ".secret").read_text())


def outbox(cli: Cli, checkpoint: str) -> list[Path]:
    """Issued files of one checkpoint, sorted by name."""
    return sorted((cli.data / "outbox" / checkpoint).glob("*.xlsx"))


@pytest.fixture
def issued(cli: Cli, _templates: dict[str, Path]) -> Cli:
    """The five-student folder with every workbook issued once (a copy of the session's template)."""
    _copy_folder(_templates["issued"], cli.data)
    return cli


def edit(path: Path, changes: dict[tuple[str, str], Any], sheet: str = MAIN_SHEET) -> bytes:
    """Re-save through openpyxl with cells changed: (学号 or group, column title) → value. Drops checkboxes."""
    book = openpyxl.load_workbook(path)
    ws = book[sheet]
    header = next(r for r in range(1, 10) if ws.cell(r, 1).value in ("学号", "班级", "宿舍", "院系"))
    columns = {ws.cell(header, c).value: c for c in range(1, ws.max_column + 1)}
    rows = {ws.cell(r, 1).value: r for r in range(header + 1, ws.max_row + 1)}
    for (row_key, column), value in changes.items():
        ws.cell(rows[row_key], columns[column]).value = value
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def cohort_folder(root: Path, count: int) -> Path:
    """A data folder with a synthetic cohort imported through the CLI, no feeds and no returns yet."""
    from lixiao.core.feeds.synthetic import make_cohort

    runner = CliRunner()
    assert runner.invoke(main, ["init", str(root), "--session", "2026届本科毕业生离校"]).exit_code == 0
    roster = root.parent / f"{root.name}-roster.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in make_cohort(count).students]))
    result = runner.invoke(main, ["--data", str(root), "students", "import", str(roster)])
    assert result.exit_code == 0, result.output
    return root

def drop(cli: Cli, name: str, data: bytes) -> Path:
    """Put a returned file into the inbox, old enough to count as complete."""
    path = cli.data / "inbox" / name
    path.write_bytes(data)
    past = time.time() - 30
    os.utime(path, (past, past))
    return path



def sync(cli: Cli, *args: str) -> dict[str, Any]:
    """Run `lixiao sync --json` and return the document (any exit code)."""
    result = cli("sync", "--json", *args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)



def statuses(cli: Cli) -> dict[tuple[str, str], tuple[str, int]]:
    """Every stored (学号, step) → (status, version)."""
    with sqlite3.connect(cli.data / "store.db") as conn:
        query = conn.execute("SELECT student_no, step, status, version FROM statuses")
        return {(n, s): (st, v) for n, s, st, v in query}



def rows(cli: Cli, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the store."""
    with sqlite3.connect(cli.data / "store.db") as conn:
        return list(conn.execute(sql))


def sql(cli: Cli, script: str) -> None:
    """Change store.db behind lixiao's back, the way someone with the sqlite3 shell would (foreign keys off, as the
    shell has them)."""
    conn = sqlite3.connect(cli.data / "store.db")
    try:
        conn.executescript(script)
    finally:
        conn.close()


RECEIPTS_FROM_MEMORY: list[str] = []  # content hashes whose receipt was built from the take and checked


@pytest.fixture(autouse=True)
def receipts_from_memory_match_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every receipt a take writes in this process is built from what the take wrote in memory (or, when an earlier
    take of the same bytes left events, from the store); here each one is also built from the store (as after a
    crash) and the two must be equal — in every test that takes a return."""
    from lixiao.sync.takeback import pipeline, receipts

    real = pipeline.write_receipt

    def compared(folder: Any, row: Any, taken: Any = None) -> str:
        assert taken is not None, "a take's receipt must be built from what the take wrote"
        assert receipts.receipt_content(folder, row, taken) == receipts.receipt_content(folder, row)
        if receipts._events(folder, row.hash, taken) is not None:  # not after an earlier take's events (a repair)
            RECEIPTS_FROM_MEMORY.append(row.hash)
        return real(folder, row, taken)

    monkeypatch.setattr(pipeline, "write_receipt", compared)
