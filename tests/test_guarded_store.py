"""The store guards itself all season (issue 24.4): a change behind lixiao's back is caught at the next open and by
the daemon's periodic check, nothing is written or published from it, verify covers every table a merge trusts,
--repair restores students and held returns, and IDs typed into free text are masked."""

from __future__ import annotations

import logging
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from lixiao.core.manual.identity import mask_id_card
from lixiao.core.storage.store import Store, StoreError
from lixiao.sync.datafolder import DataFolderError, open_folder
from lixiao.sync.live.daemon import Watcher
from lixiao.sync.live.service import check_health
from lixiao.sync.takeback.integrity import check_folder

from .conftest import Cli, drop, edit, make_id, outbox, rows, set_settings, sql, statuses, sync

STUDENT = "0803010103"
ID_105 = make_id(105, False)



def ticked(cli: Cli, no: str = STUDENT) -> bytes:
    """The newest utilities workbook returned with one student's 清理电费 ticked."""
    return edit(outbox(cli, "utilities")[-1], {(no, "清理电费"): True})


@pytest.fixture
def merged(issued: Cli) -> Cli:
    """One return merged, a status set by hand, a waiver and a loan confirmation; verify passes."""
    drop(issued, "水电.xlsx", ticked(issued))
    assert sync(issued)["files"][0]["outcome"] == "merged"
    assert issued("set", STUDENT, "dorm_items", "passed").exit_code == 0
    assert issued("waive", "0801020227", "pay_arrears", "--reason", "欠费缓交").exit_code == 0
    store = Store.open(issued.data / "store.db")
    with store.transaction():
        store.confirm_lender("0803010104", "10534", "feed:loans:national:贷款.xlsx", "测试")
    store.close()
    assert issued("verify").exit_code == 0
    return issued


FORGE = f"UPDATE statuses SET status = 'failed' WHERE student_no = '{STUDENT}' AND step = 'dorm_items'"
FORGE_INSERT = ("INSERT INTO statuses VALUES ('0803010104', 'dorm_items', 'passed', '', 1, '2026-06-01T10:00:00+08:00',"
                " 'cli', 'x')")


@pytest.mark.parametrize("command", [("set", "0803010105", "electricity", "passed"), ("sync",),
                                     ("report", "--public", "--iterations", "1000")])
def test_a_status_forged_with_sqlite3_is_refused_before_anything_is_published(merged: Cli,
                                                                              command: tuple[str, ...]) -> None:
    """The first set, sync or report --public after a forged status refuses (the tables disagree with the chain),
    writes store.damaged, publishes nothing, and watch --check then says unhealthy."""
    sql(merged, FORGE_INSERT)
    before = statuses(merged)
    result = merged(*command)
    assert result.exit_code == 2 and "数据库在 lixiao 之外被改动，与审计记录不符" in result.output, result.output
    assert "0803010104 dorm_items" in result.output
    assert (merged.data / "store.damaged").exists() and statuses(merged) == before
    assert not (merged.data / "reports" / "public").exists()
    refused = merged("report")
    assert refused.exit_code == 2 and "拒绝写入" in refused.output
    health = check_health(merged.data)
    assert not health.healthy and "数据库有问题" in health.line


def test_a_forged_status_refuses_the_daemon_start_and_watch_check_says_so(merged: Cli) -> None:
    """lixiao watch on a forged store does not start; lixiao watch --check is unhealthy, naming store.damaged."""
    sql(merged, FORGE)
    assert statuses(merged)[(STUDENT, "dorm_items")][0] == "failed"
    started = merged("watch")
    assert started.exit_code == 2 and "与审计记录不符" in started.output, started.output
    check = merged("watch", "--check")
    assert check.exit_code == 1 and "store.damaged" in check.output, check.output


def test_a_store_only_lixiao_wrote_is_not_replayed_at_open(merged: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check at open runs only when the files changed behind lixiao's back (the .check cache says so)."""
    replays: list[int] = []
    original = Store.content_problems

    def counted(self: Store) -> list[str]:
        replays.append(1)
        return original(self)
    monkeypatch.setattr(Store, "content_problems", counted)
    assert merged("set", "0803010105", "electricity", "passed").exit_code == 0
    assert merged("set", "0803010105", "dorm_items", "passed").exit_code == 0
    assert replays == []
    sql(merged, "INSERT INTO progress VALUES ('2026-06-01', 1, 1, '')")  # harmless, but not lixiao's
    assert merged("set", "0803010105", "return_books", "passed").exit_code == 0
    assert replays == [1]


def test_a_deleted_student_is_restored_by_repair(merged: Cli) -> None:
    """DELETE FROM students (its statuses left pointing at nobody): verify names the student, --repair restores
    the whole row from the roster import's events (身份证号 included) and the reports list every student."""
    sql(merged, f"DELETE FROM students WHERE student_no = '{STUDENT}'")
    result = merged("verify")
    assert result.exit_code == 1 and f"学生名单缺少 1 名审计记录中的学生（名单行被删除），如 {STUDENT}" in result.output
    assert merged("set", "0803010105", "electricity", "passed").exit_code == 2
    repaired = merged("verify", "--repair")
    assert repaired.exit_code == 0 and "校验通过" in repaired.output, repaired.output
    assert rows(merged, f"SELECT name, id_card FROM students WHERE student_no = '{STUDENT}'") == \
        [("丁德卫", make_id(103))]
    assert merged("set", "0803010105", "electricity", "passed").exit_code == 0
    assert merged("report").exit_code == 0
    assert rows(merged, "SELECT count(*) FROM students") == [(5,)]
    assert STUDENT in (merged.data / "reports" / "students.js").read_text("utf-8")


def test_a_student_edited_and_a_loan_confirmation_forged_are_restored(merged: Cli) -> None:
    """A changed 身份证号 and a forged lender confirmation are named by verify and put back by --repair."""
    sql(merged, f"UPDATE students SET id_card = '{make_id(999)}' WHERE student_no = '0803010105';"
                "INSERT INTO loan_confirmations VALUES ('0803010105', '12649', 'x', 'x', '2026-06-01')")
    result = merged("verify")
    assert "学生名单中 1 名学生与审计记录不符（名单被改动），如 0803010105" in result.output
    assert "贷款确认表中 1 条确认与审计记录不符" in result.output
    assert merged("verify", "--repair").exit_code == 0
    assert rows(merged, "SELECT id_card FROM students WHERE student_no = '0803010105'") == [(ID_105,)]
    assert rows(merged, "SELECT lender FROM loan_confirmations") == [("10534",)]


def test_a_workbook_row_changed_is_caught_and_needs_a_backup(merged: Cli) -> None:
    """The baseline of an issued workbook changed behind lixiao's back: verify names it; --repair cannot rebuild
    it from its hash and says to restore a backup."""
    sql(merged, "UPDATE workbooks SET baseline = baseline || ' ' WHERE rowid = 1")
    result = merged("verify")
    assert result.exit_code == 1 and "已签发工作簿表中" in result.output and "基线" in result.output, result.output
    repaired = merged("verify", "--repair")
    assert repaired.exit_code == 1 and "已签发工作簿的记录被改动或删除，无法就地修复" in repaired.output


def test_a_lost_wal_tail_with_a_merged_and_a_held_return_is_repaired_in_place(issued: Cli) -> None:
    """store.db put back without its WAL after one return merged and another was held: --repair merges the first
    again and holds the second again (held/, ledger HELD), verify passes and writes work."""
    for no in (STUDENT, "0803010104"):
        assert issued("set", no, "electricity", "passed").exit_code == 0
    assert issued("issue", "--checkpoint", "utilities").exit_code == 0
    set_settings(issued.data, "sync", max_revocations=1)
    assert issued("verify").exit_code == 0
    saved = issued.data.parent / "store-before.db"
    shutil.copy(issued.data / "store.db", saved)
    drop(issued, "撤销.xlsx", edit(outbox(issued, "utilities")[-1], {(STUDENT, "清理电费"): False,
                                                                     ("0803010104", "清理电费"): False}))
    assert sync(issued)["files"][0]["outcome"] == "held"
    drop(issued, "水电.xlsx", ticked(issued, "0803010105"))
    assert sync(issued)["files"][0]["outcome"] == "merged"
    shutil.copy(saved, issued.data / "store.db")
    for suffix in ("-wal", "-shm"):
        (issued.data / f"store.db{suffix}").unlink(missing_ok=True)
    assert issued("verify").exit_code == 1
    repaired = issued("verify", "--repair")
    assert repaired.exit_code == 0 and "校验通过" in repaired.output, repaired.output
    assert sorted(rows(issued, "SELECT file_name, outcome FROM returns")) == sorted([
        ("撤销.xlsx", "held"), (_archived(issued), "merged")])
    assert (issued.data / "held" / "撤销.xlsx").exists()
    assert statuses(issued)[("0803010105", "electricity")][0] == "passed"
    assert issued("set", "0803010105", "dorm_items", "passed").exit_code == 0
    assert issued("verify").exit_code == 0


def _archived(cli: Cli) -> str:
    [path] = (cli.data / "archive").glob("*.xlsx")
    return path.name


def test_an_id_typed_into_a_remark_is_masked_by_status_and_history(issued: Cli) -> None:
    """备注 holding a 身份证号: status and history (text and --json) show it masked 6+4, never whole."""
    remark = f"学生本人身份证 {ID_105} 已核对"
    assert issued("set", "0803010105", "electricity", "failed", "--remark", remark).exit_code == 0
    for command in (("status", "0803010105"), ("history", "0803010105")):
        for extra in ((), ("--json",)):
            output = issued(*command, *extra).output
            assert ID_105 not in output, (command, extra)
    assert mask_id_card(ID_105) in issued("status", "0803010105").output


def test_the_daemon_check_stops_taking_returns_and_marks_the_report(merged: Cli,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The daemon's check (at start and every verify_every) on a store forged while it runs: store.damaged, one
    Chinese log line, a banner on the report already built, and the inbox left alone."""
    assert merged("report").exit_code == 0
    folder = open_folder(merged.data)
    watcher = Watcher(folder, settle=0.0, verify_every=60.0)
    try:
        assert watcher.verify()
        sql(merged, FORGE)
        with caplog.at_level(logging.ERROR, logger="lixiao.watch"):
            assert not watcher.verify()
        [line] = [r.getMessage() for r in caplog.records]
        assert line.startswith("校验发现数据库有问题，已暂停收件") and f"{STUDENT} dorm_items" in line
        assert (merged.data / "store.damaged").exists()
        assert "本报表自" in (merged.data / "reports" / "index.html").read_text("utf-8")
        path = drop(merged, "再交.xlsx", ticked(merged, "0803010105"))
        watcher.scan()
        assert watcher.step(b"") == 0 and path.exists()
    finally:
        folder.close()


TRUSTED = {  # what a merge or a report trusts, as verify must hold it: table → columns
    "students": "student_no, name, gender, id_card, college, major, class_name, dorm, level, previous, "
                "national_loan, local_loan, switch, withheld, lenders",
    "statuses": "*", "status_lines": "*", "audit": "*", "loan_confirmations": "*", "workbooks": "*",
    "waivers": "student_no, step, reason, evidence, operator, created_at WHERE restored_at IS NULL",
    "returns": "hash, state, outcome",
}


def _trusted(path: Path) -> dict[str, list[tuple[object, ...]]] | None:
    """Every trusted value of a store file (None when SQLite cannot read it)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.text_factory = bytes  # a flipped byte may leave text that is not UTF-8
        try:
            return {table: sorted(conn.execute(f"SELECT {columns.split(' WHERE ')[0]} FROM {table}"
                                               + (f" WHERE {columns.split(' WHERE ')[1]}" if " WHERE " in columns
                                                  else "")), key=repr)
                    for table, columns in TRUSTED.items()}
        finally:
            conn.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError):  # a flip in the schema's names
        return None


def _offsets(path: Path, rng: random.Random) -> list[int]:
    """Where to flip: 150 bytes anywhere in the file, and 40 inside the cells of each trusted table's pages (dbstat:
    a page's cells fill it from its end)."""
    conn = sqlite3.connect(path)
    try:
        pages = {table: [(int(r[0]), int(r[1]), int(r[2])) for r in conn.execute(
            "SELECT pageno, pgsize, pgsize - unused FROM dbstat WHERE name = ?", [table])] for table in TRUSTED}
    finally:
        conn.close()
    offsets = [rng.randrange(path.stat().st_size) for _ in range(150)]
    for _table, numbers in sorted(pages.items()):
        for number, size, used in (rng.choice(numbers) for _ in range(40)):
            offsets.append(number * size - 1 - rng.randrange(used))
    return offsets


def test_random_byte_flips_that_change_a_trusted_value_are_all_caught(merged: Cli) -> None:
    """Seeded single-byte flips in store.db (anywhere, and inside each trusted table's pages, workbooks included):
    every flip verify lets pass changed no trusted value — it fell in free space or page slack, or in what no merge
    trusts (updated_at, a ledger row's file name and details, deliveries, progress, the review queue …)."""
    folder = open_folder(merged.data, write=False)
    folder.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    folder.close()
    original = (merged.data / "store.db").read_bytes()
    want = _trusted(merged.data / "store.db")
    assert want is not None and all(want.values())
    rng = random.Random(24)
    changed: dict[str, int] = {}
    for at in _offsets(merged.data / "store.db", rng):
        flipped = bytearray(original)
        flipped[at] ^= rng.randrange(1, 256)
        (merged.data / "store.db").write_bytes(bytes(flipped))
        for suffix in ("-wal", "-shm"):
            (merged.data / f"store.db{suffix}").unlink(missing_ok=True)
        try:
            folder = open_folder(merged.data, write=False)
            try:
                damage = check_folder(folder).damage
            finally:
                folder.close()
        except (StoreError, DataFolderError, sqlite3.DatabaseError) as exc:  # verify cannot even open it: caught
            damage = [str(exc)]
        have = _trusted(merged.data / "store.db")
        assert damage or have == want, f"byte {at} changed a trusted value unnoticed"
        for table in TRUSTED if have is not None else ():
            changed[table] = changed.get(table, 0) + (have[table] != want[table])  # type: ignore[index]
    # the flips did reach each trusted table's values (so the assertion above was put to the test)
    assert all(changed.get(table, 0) >= 1 for table in TRUSTED), changed
