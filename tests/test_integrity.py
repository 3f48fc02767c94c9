"""Tampering with the store, its chain, its anchor or the folder: verify detects it, writes are refused until
verify passes again, and verify --repair restores what it can."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import Result

from lixiao.core.manual.model import Status
from lixiao.core.storage.chain import Event
from lixiao.core.storage.store import Store
from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.live.daemon import Watcher
from lixiao.sync.takeback import integrity

from .conftest import Cli, drop, edit, outbox, rows, set_settings, sql, statuses, sync

STUDENT = "0803010103"



def behind_triggers(cli: Cli, statement: str) -> None:
    """Edit or delete audit events with the append-only triggers dropped and re-created afterwards."""
    sql(cli, f"""
        DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
        {statement};
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    """)


def ticked(cli: Cli) -> bytes:
    """A utilities workbook returned with 丁德卫's 清理电费 ticked."""
    return edit(outbox(cli, "utilities")[0], {(STUDENT, "清理电费"): True})


@pytest.fixture
def merged(issued: Cli) -> Cli:
    """The issued folder with one return merged (electricity passed) and a status set by hand."""
    drop(issued, "水电.xlsx", ticked(issued))
    [item] = sync(issued)["files"]
    assert item["outcome"] == "merged"
    assert issued("set", STUDENT, "dorm_items", "passed").exit_code == 0
    assert issued("verify").exit_code == 0
    return issued


def assert_damaged(cli: Cli, message: str) -> Result:
    """verify exits 1 naming the problem, and a writing command is then refused."""
    result = cli("verify")
    assert result.exit_code == 1 and message in result.output, result.output
    refused = cli("set", "0803010104", "electricity", "passed")
    assert refused.exit_code == 2 and "拒绝写入" in refused.output, refused.output
    return result


def assert_repaired(cli: Cli) -> None:
    """verify --repair ends with a passing verify, and writing works again."""
    result = cli("verify", "--repair")
    assert result.exit_code == 0 and "校验通过" in result.output, result.output
    assert cli("verify").exit_code == 0
    assert cli("set", "0803010104", "electricity", "passed").exit_code == 0


def archive_of(cli: Cli) -> Path:
    """The one archived return."""
    [path] = (cli.data / "archive").glob("*.xlsx")
    return path


def test_status_forged_by_sql_is_detected_refused_and_restored(merged: Cli) -> None:
    """UPDATE statuses SET status='passed' behind the chain: verify names the cell; --repair puts the audited value
    back."""
    sql(merged, f"UPDATE statuses SET status = 'failed' WHERE student_no = '{STUDENT}' AND step = 'electricity'")
    result = assert_damaged(merged, "状态表中 1 处与审计记录不符")
    assert f"{STUDENT} electricity：状态表中为“failed”，审计记录为“passed”" in result.output
    assert_repaired(merged)
    assert statuses(merged)[(STUDENT, "electricity")] == ("passed", 1)
    assert rows(merged, "SELECT count(*) FROM audit WHERE kind = 'repair'") == [(1,)]


def test_status_inserted_by_sql_is_removed_by_repair(merged: Cli) -> None:
    """A status row no event explains is reported as forged and --repair removes it."""
    sql(merged, "INSERT INTO statuses VALUES ('0803010104', 'return_books', 'passed', '', 1, '2026-06-01', 'cli', 'x')")
    assert_damaged(merged, "状态表中 1 行没有审计记录（状态行被伪造）")
    assert_repaired(merged)
    assert ("0803010104", "return_books") not in statuses(merged)


def test_status_row_deleted_is_detected_and_restored(merged: Cli) -> None:
    """A deleted status row is named; --repair rebuilds it from the chain with its version."""
    sql(merged, f"DELETE FROM statuses WHERE student_no = '{STUDENT}' AND step = 'dorm_items'")
    assert_damaged(merged, f"状态表缺少 1 行审计记录中的状态（状态行被删除），如 {STUDENT} dorm_items")
    assert_repaired(merged)
    assert statuses(merged)[(STUDENT, "dorm_items")] == ("passed", 1)


def test_waiver_forged_is_detected_and_removed(merged: Cli) -> None:
    """A waiver inserted by SQL lifts a restriction nobody lifted: verify names it, --repair removes it."""
    sql(merged, "INSERT INTO waivers (student_no, step, reason, operator, created_at) "
                "VALUES ('0801020227', 'pay_arrears', '伪造', 'x', '2026-06-01')")
    assert_damaged(merged, "解除限制表中 1 条有效记录与审计记录不符（记录被伪造或改动），如 0801020227 pay_arrears")
    assert_repaired(merged)
    assert merged.json("waivers") == []


def test_waiver_deleted_is_detected_and_restored(merged: Cli) -> None:
    """Deleting a waiver in force re-imposes a restriction silently; verify names it, --repair brings it back."""
    result = merged("waive", "0801020227", "pay_arrears", "--reason", "欠费缓交", "--evidence", "缓交证明2026-031")
    assert result.exit_code == 0, result.output
    sql(merged, "DELETE FROM waivers")
    assert_damaged(merged, "解除限制表缺少 1 条审计记录中仍有效的解除限制")
    assert_repaired(merged)
    [waiver] = merged.json("waivers")
    assert (waiver["student_no"], waiver["reason"], waiver["evidence"]) == (
        "0801020227", "欠费缓交", "缓交证明2026-031")


def test_ledger_row_deleted_is_detected_and_restored(merged: Cli) -> None:
    """Without its ledger row a merged file would count again; verify names it, --repair restores the row."""
    sql(merged, "DELETE FROM returns")
    result = assert_damaged(merged, "台账缺少 1 个审计记录中处理过的文件（台账行被删除），如 “水电.xlsx”")
    assert "没有台账记录：数据库可能丢失了这次合并" in result.output
    assert_repaired(merged)
    assert rows(merged, "SELECT file_name, state, outcome FROM returns") == [("水电.xlsx", "merged", "merged")]
    assert statuses(merged)[(STUDENT, "electricity")] == ("passed", 1)


def test_audit_event_edited_needs_a_backup(merged: Cli) -> None:
    """An event edited in the middle breaks the chain: verify names it; --repair refuses and points to a backup."""
    behind_triggers(merged, "UPDATE audit SET operator = 'mallory' WHERE seq = 3")
    assert_damaged(merged, "审计记录 3 的内容与哈希不符（记录被改动）")
    result = merged("verify", "--repair")
    assert result.exit_code == 1 and "只能用 lixiao backup 的备份恢复" in result.output, result.output
    assert merged("set", "0803010104", "electricity", "passed").exit_code == 2


def test_audit_event_deleted_in_the_middle_needs_a_backup(merged: Cli) -> None:
    """A deleted event in the middle leaves a gap verify names; --repair refuses and points to a backup."""
    behind_triggers(merged, "DELETE FROM audit WHERE seq = 4")
    assert_damaged(merged, "审计记录 5 的前一哈希不连续（记录被删除或插入）")
    result = merged("verify", "--repair")
    assert result.exit_code == 1 and "审计链中间的记录被改动或删除" in result.output, result.output


def test_newest_audit_events_deleted_is_detected_and_accepted(merged: Cli) -> None:
    """Deleting the newest events leaves a consistent chain, but the anchor remembers: writes are refused at once;
    --repair accepts the loss (an audit event says so) and rolls the status back to what the chain says."""
    assert merged("set", STUDENT, "return_books", "passed").exit_code == 0
    [(last,)] = rows(merged, "SELECT max(seq) FROM audit")
    behind_triggers(merged, f"DELETE FROM audit WHERE seq = {last}")
    refused = merged("set", "0803010104", "electricity", "passed")
    assert refused.exit_code == 2 and "审计链尾部丢失或被改动" in refused.output, refused.output
    assert_damaged(merged, f"审计链尾部丢失或被改动：锚点 audit.head 记录到第 {last} 条，"
                           f"数据库审计链只到第 {last - 1} 条")
    assert_repaired(merged)
    [(detail,)] = rows(merged, "SELECT detail FROM audit WHERE decision = 'tail_accepted'")
    assert detail == f"审计链尾部丢失：锚点第 {last} 条，数据库第 {last - 1} 条；已接受"
    assert (STUDENT, "return_books") not in statuses(merged)


def test_lost_wal_after_a_sync_is_detected_and_the_merge_redone(issued: Cli) -> None:
    """store.db put back without its -wal after a sync (a killed daemon, a truncated WAL): the merge is gone but
    archive/ and receipts/ remain; verify sees the lost tail and the unledgered file, --repair merges it again."""
    assert issued("verify").exit_code == 0
    saved = issued.data.parent / "store-before.db"
    shutil.copy(issued.data / "store.db", saved)
    drop(issued, "水电.xlsx", ticked(issued))
    assert sync(issued)["files"][0]["outcome"] == "merged"
    shutil.copy(saved, issued.data / "store.db")
    for suffix in ("-wal", "-shm"):
        (issued.data / f"store.db{suffix}").unlink(missing_ok=True)
    assert (STUDENT, "electricity") not in statuses(issued)
    assert any((issued.data / "receipts").iterdir())
    refused = issued("sync")
    assert refused.exit_code == 2 and "审计链尾部丢失或被改动" in refused.output, refused.output
    result = assert_damaged(issued, "审计链尾部丢失或被改动")
    assert f"archive/{archive_of(issued).name} 没有台账记录：数据库可能丢失了这次合并；运行 lixiao verify --repair" \
        in result.output
    assert_repaired(issued)
    assert statuses(issued)[(STUDENT, "electricity")] == ("passed", 1)
    assert rows(issued, "SELECT file_name, outcome FROM returns") == [(archive_of(issued).name, "merged")]


def test_archive_file_removed_is_detected_and_not_repairable(merged: Cli) -> None:
    """A merged file missing from archive/ is named; --repair cannot make it up; putting it back clears it."""
    path = archive_of(merged)
    data = path.read_bytes()
    path.unlink()
    assert_damaged(merged, "已合并的文件“水电.xlsx”在 archive/ 中找不到")
    assert merged("verify", "--repair").exit_code == 1
    assert merged("set", "0803010104", "electricity", "passed").exit_code == 2
    path.write_bytes(data)
    assert_repaired(merged)


def test_archive_file_added_is_detected_and_merged_by_repair(issued: Cli) -> None:
    """A returned workbook in archive/ that the ledger does not know is flagged; --repair merges it."""
    data = ticked(issued)
    (issued.data / "archive" / f"{hashlib.sha256(data).hexdigest()}.xlsx").write_bytes(data)
    assert_damaged(issued, "没有台账记录：数据库可能丢失了这次合并；运行 lixiao verify --repair")
    assert_repaired(issued)
    assert statuses(issued)[(STUDENT, "electricity")] == ("passed", 1)


def test_receipt_without_ledger_row_is_detected_and_not_repairable(merged: Cli) -> None:
    """A receipt naming a file hash the ledger lacks is flagged; --repair cannot invent the merge."""
    receipt = merged.data / "receipts" / "20260601-120000-水电-0123456789ab-回执.xlsx"
    receipt.write_bytes(b"")
    assert_damaged(merged, "回执 receipts/20260601-120000-水电-0123456789ab-回执.xlsx 没有对应的台账记录")
    assert merged("verify", "--repair").exit_code == 1
    receipt.unlink()
    assert_repaired(merged)


def test_receipt_of_a_ledgered_file_passes(merged: Cli) -> None:
    """A receipt named with the first 12 hex of a ledgered file's hash is not a problem."""
    digest = archive_of(merged).stem
    (merged.data / "receipts" / f"20260601-120000-水电-{digest[:12]}-回执.xlsx").write_bytes(b"")
    assert merged("verify").exit_code == 0


def test_backup_refuses_a_damaged_store(merged: Cli, tmp_path: Path) -> None:
    """backup runs verify's checks first: a forged status means no copy is written."""
    sql(merged, f"UPDATE statuses SET status = 'failed' WHERE student_no = '{STUDENT}' AND step = 'electricity'")
    result = merged("backup", str(tmp_path / "b.db"))
    assert result.exit_code == 1 and "数据库未通过校验" in result.output, result.output
    assert not (tmp_path / "b.db").exists()


def test_inbox_file_unreadable_or_badly_named_is_reported(merged: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """An inbox file that cannot be read, or whose name is not UTF-8, is a problem line, not a traceback, and it
    does not block writing."""
    inbox = merged.data / "inbox"
    odd = inbox / os.fsdecode(b"\xff\xfe-returned.xlsx")
    locked = inbox / "locked.xlsx"
    for path in (odd, locked):
        path.write_bytes(b"not yet processed")
        os.utime(path, (time.time() - 600, time.time() - 600))
    real = integrity._read

    def refuse(path: Path) -> bytes:
        if path.name == "locked.xlsx":
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(integrity, "_read", refuse)
    result = merged("verify")
    assert result.exit_code == 1, result.output
    assert "收件箱中的“locked.xlsx”无法读取（没有权限）" in result.output
    assert "收件箱中的“\ufffd\ufffd-returned.xlsx”已放置超过 120 秒仍未处理" in result.output
    assert merged("set", "0803010104", "electricity", "passed").exit_code == 0


def test_ledger_changes_are_audit_events_of_the_return(merged: Cli) -> None:
    """Each ledger step of a return is an event with old and new state, found by the file's hash."""
    store = Store.open(merged.data / "store.db", guard=False)
    try:
        events = store.audit_events(archive_of(merged).stem)
    finally:
        store.close()
    ledger = [(e.old, e.new, e.detail) for e in events if e.kind == "ledger"]
    assert ledger == [("", "received/", "水电.xlsx"), ("received/", "staged/", "水电.xlsx"),
                      ("staged/", "merged/merged", "水电.xlsx")]
    assert [e.decision for e in events if e.kind == "return"] == ["merged"]


def test_ledger_rows_from_before_schema_4_are_explained_by_their_return_event(tmp_path: Path) -> None:
    """A ledger row without ledger events passes when a "return" event with its outcome explains it."""
    store = Store.create(tmp_path / "store.db", "2026届本科毕业生离校", 2026, "undergrad")
    with store.transaction():
        for digest, decision in (("a" * 64, "merged"), ("b" * 64, "rejected")):
            store.db.execute("INSERT INTO returns (hash, file_name, state, outcome, received_at, updated_at) "
                             "VALUES (?, ?, 'merged', 'merged', '', '')", [digest, f"{digest[0]}.xlsx"])
            store.append_audit([Event("return", decision=decision, source_hash=digest)])
    assert store.replay_problems(store.replay()) == [
        "台账中 1 个文件没有审计记录（台账行被伪造），如 “b.xlsx”（bbbbbbbbbbbb）；"
        "运行 lixiao verify --repair 可按审计记录恢复"]
    store.close()


def test_write_guard_caches_the_quick_check(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writing command after lixiao's own writes skips quick_check (.check matches); a change behind lixiao's
    back makes the next writing command run it again."""
    assert cli("set", STUDENT, "electricity", "passed").exit_code == 0
    checks: list[Path] = []
    original = Store._quick_check

    def counted(self: Store) -> str:
        checks.append(self.path)
        return original(self)
    monkeypatch.setattr(Store, "_quick_check", counted)
    assert cli("set", STUDENT, "dorm_items", "passed").exit_code == 0
    assert cli("set", STUDENT, "return_books", "passed").exit_code == 0
    assert checks == []
    sql(cli, "INSERT INTO progress VALUES ('2026-06-01', 1, 1, '')")
    assert cli("set", STUDENT, "return_student_card", "passed").exit_code == 0
    assert len(checks) == 1


def test_status_write_after_a_passing_verify_keeps_it_passing(merged: Cli) -> None:
    """Normal writes (set, waive, sync) keep verify passing: replay, anchor and ledger stay in step."""
    assert merged("waive", "0801020227", "pay_arrears", "--reason", "欠费缓交").exit_code == 0
    assert merged("unwaive", "0801020227", "pay_arrears").exit_code == 0
    assert merged("set", STUDENT, "electricity", Status.FAILED.value).exit_code == 0
    assert merged("verify").exit_code == 0
    assert not (merged.data / "store.damaged").exists()


def test_running_daemon_stops_taking_returns_once_verify_finds_damage(issued: Cli) -> None:
    """A daemon opened before the damage was found leaves new returns in the inbox while store.damaged exists."""
    folder = open_folder(issued.data)
    watcher = Watcher(folder, settle=0.0)
    key = secret_key(folder.root)
    sql(issued, "INSERT INTO statuses VALUES ('0803010104', 'return_books', 'passed', '', 1, '2026-06-01', 'cli', 'x')")
    assert issued("verify").exit_code == 1
    path = drop(issued, "水电.xlsx", ticked(issued))
    watcher.scan()
    assert watcher.step(key) == 0 and watcher.step(key) == 0
    folder.close()
    assert path.exists() and rows(issued, "SELECT count(*) FROM returns") == [(0,)]


def test_verify_beside_a_writer_sees_one_consistent_state(merged: Cli) -> None:
    """A commit by another process while verify reads (the daemon merging) is not reported as damage."""
    folder = open_folder(merged.data, write=False)
    wrote: list[int] = []

    def commit_meanwhile(done: int, total: int) -> None:
        if wrote:
            return
        other = Store.open(merged.data / "store.db")
        with other.transaction():
            other.write_status("0803010104", "electricity", Status.PASSED, remark="", source="cli", operator="x",
                               decision="applied")
        other.close()
        wrote.append(done)
    try:
        found = integrity.check_folder(folder, commit_meanwhile)
    finally:
        folder.close()
    assert wrote and found.problems == []
    assert merged("verify").exit_code == 0


def test_a_tail_cut_through_a_return_is_repaired_by_merging_it_again(issued: Cli) -> None:
    """The newest events deleted down to the middle of a two-tick return (one status event left): --repair
    rolls back to the chain, then merges the archived return again, so both ticks and the ledger agree."""
    data = edit(outbox(issued, "utilities")[0], {(STUDENT, "清理电费"): True, ("0803010104", "清理电费"): True})
    drop(issued, "两人.xlsx", data)
    assert sync(issued)["files"][0]["applied"] == 2
    [(first,)] = rows(issued, "SELECT min(seq) FROM audit WHERE kind = 'status'")
    behind_triggers(issued, f"DELETE FROM audit WHERE seq > {first}")
    assert issued("verify").exit_code == 1
    assert_repaired(issued)
    assert statuses(issued)[(STUDENT, "electricity")][0] == "passed"
    assert statuses(issued)[("0803010104", "electricity")][0] == "passed"
    assert rows(issued, "SELECT outcome FROM returns") == [("merged",)]


def test_a_held_return_whose_hold_was_lost_is_held_again_by_repair(issued: Cli) -> None:
    """A file in held/ whose "held" the chain lost is damage; --repair takes it again at once: back in held/, the
    ledger HELD, so it can still be confirmed, and writes work afterwards."""
    for no in (STUDENT, "0803010104"):
        assert issued("set", no, "electricity", "passed").exit_code == 0
    assert issued("issue", "--checkpoint", "utilities").exit_code == 0
    set_settings(issued.data, "sync", max_revocations=1)
    drop(issued, "撤销.xlsx", edit(outbox(issued, "utilities")[-1], {(STUDENT, "清理电费"): False,
                                                                     ("0803010104", "清理电费"): False}))
    assert sync(issued)["files"][0]["outcome"] == "held"
    [(first,)] = rows(issued, "SELECT min(seq) FROM audit WHERE kind = 'ledger' AND new = 'received/'"
                              " AND detail = '撤销.xlsx'")
    behind_triggers(issued, f"DELETE FROM audit WHERE seq >= {first}")
    for receipt in (issued.data / "receipts").glob("*待确认*"):
        receipt.unlink()
    assert issued("verify").exit_code == 1
    repaired = issued("verify", "--repair")
    assert repaired.exit_code == 0 and "已重新处理：held" in repaired.output, repaired.output
    assert (issued.data / "held" / "撤销.xlsx").exists() and not (issued.data / "inbox" / "撤销.xlsx").exists()
    assert rows(issued, "SELECT outcome FROM returns WHERE file_name = '撤销.xlsx'") == [("held",)]
    assert issued("set", "0803010105", "electricity", "passed").exit_code == 0


def test_an_old_temp_looking_file_in_the_inbox_is_reported(issued: Cli) -> None:
    """A file named like Excel's temp files, left for over an hour, is named by verify (not silently ignored)."""
    path = drop(issued, "3A9F0C21", b"PK\x03\x04 looks like a workbook")
    os.utime(path, (time.time() - 7200,) * 2)
    result = issued("verify")
    assert result.exit_code == 1 and "“3A9F0C21”看起来是编辑软件的临时文件" in result.output


def test_a_file_put_into_held_by_hand_is_named(issued: Cli) -> None:
    """held/ holds only returns the ledger holds: a file copied there by hand is reported by verify."""
    (issued.data / "held").mkdir()
    (issued.data / "held" / "手放.xlsx").write_bytes(ticked(issued))
    result = issued("verify")
    assert result.exit_code == 1 and "held/手放.xlsx 没有待确认记录" in result.output


def test_verify_names_an_inbox_copy_still_arriving_not_forgotten(merged: Cli) -> None:
    """A half-copied workbook with its source's old mtime (a Windows copy) is named as still arriving, not as a
    file left unprocessed; a whole one left there is."""
    whole = outbox(merged, "utilities")[0].read_bytes()
    for name, data in (("半截.xlsx", whole[: len(whole) // 2]), ("整的.xlsx", whole)):
        (merged.data / "inbox" / name).write_bytes(data)
        os.utime(merged.data / "inbox" / name, (time.time() - 3600, time.time() - 3600))
    result = merged("verify")
    assert "收件箱中的“半截.xlsx”还没有复制完整（文件的结尾还没有复制过来）" in result.output
    assert "“半截.xlsx”已放置超过" not in result.output
    assert "收件箱中的“整的.xlsx”已放置超过 120 秒仍未处理" in result.output
