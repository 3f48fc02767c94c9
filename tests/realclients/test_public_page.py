"""The page safe to publish, in a real headless Chromium: the right 学号 + last 6 of the ID shows that student's
record, a wrong pair shows nothing, and the published files hold no name or 学号 in clear."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from .test_chromium import ARGS, CHROMIUM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200-student demo folder with reports/public/ built."""
    if not Path(CHROMIUM).exists() or not shutil.which("chromium"):
        if os.environ.get("CI") == "true":
            pytest.fail("Debian chromium is not installed (apt-get install chromium)")
        pytest.skip("Debian chromium is not installed")
    folder = tmp_path_factory.mktemp("public") / "demo"
    runner = CliRunner()
    assert runner.invoke(main, ["demo", str(folder), "--students", "200"]).exit_code == 0
    result = runner.invoke(main, ["--data", str(folder), "report", "--public", "--iterations", "5000"])
    assert result.exit_code == 0, result.output
    return folder


def _students(folder: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(folder / "store.db") as conn:
        return list(conn.execute("SELECT student_no, name, id_card, class_name FROM students ORDER BY student_no"))


def _query(folder: Path, pairs: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """(message, who, step rows) after each query in one browser page."""
    from playwright.sync_api import sync_playwright

    answers = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((folder / "reports" / "public" / "离校查询.html").as_uri())
        for number, last6 in pairs:
            page.fill("#student-no", number)
            page.fill("#id-last6", last6)
            page.click("#go")
            page.wait_for_function("document.getElementById('message').textContent !== '正在查询……'")
            shown = page.is_visible("#record")
            answers.append((page.inner_text("#message"), page.inner_text("#who") if shown else "",
                            page.locator("#steps tr").count() if shown else 0))
        browser.close()
    assert errors == []
    return answers


def test_the_right_pair_shows_the_record_and_a_wrong_pair_nothing(published: Path) -> None:
    """学号 + last 6 (any case for X) → that student's name and steps; a wrong last 6, another student's 学号
    with these 6, or an unknown 学号 → the 没有查到 line and no record."""
    students = _students(published)
    number, name, id_card, _ = students[11]
    other = students[12][0]
    answers = _query(published, [(number, id_card[-6:].lower()), (number, "000000"), (other, id_card[-6:]),
                                 ("9999999999", id_card[-6:])])
    message, who, rows = answers[0]
    assert message == "" and name in who and number in who and rows >= 5
    for message, who, rows in answers[1:]:
        assert "没有查到" in message and who == "" and rows == 0


def test_the_published_files_hold_nothing_in_clear(published: Path) -> None:
    """No name, 学号, 身份证号 fragment or class of any student in reports/public/, and every record has the same
    size, so a record does not tell how far a student got."""
    students = _students(published)
    text = "".join(p.read_text("utf-8") for p in (published / "reports" / "public").rglob("*") if p.is_file())
    for number, name, id_card, class_name in students:
        assert number not in text and name not in text and id_card[-6:] not in text and class_name not in text
    sizes = set()
    for shard in (published / "reports" / "public" / "r").glob("*.js"):
        body = shard.read_text("utf-8")
        records = json.loads(body[body.index(",") + 1:body.rindex(")")])
        sizes |= {len(base64.b64decode(sealed)) for _, sealed in records.values()}
    assert len(sizes) == 1
