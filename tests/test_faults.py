"""Faults: a full disk, files that vanish or shrink, missed events, a long reader, a corrupted store."""

from __future__ import annotations

import sqlite3

import pytest

from lixiao.core.storage.store import Store, StoreError
from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.live.daemon import Watcher
from lixiao.sync.takeback import pipeline
from lixiao.sync.takeback.pipeline import process_file

from .conftest import Cli, drop, edit, outbox, set_settings, statuses, sync


def ticked(cli: Cli, no: str = "0803010103") -> bytes:
    """The utilities workbook with one electricity tick."""
    return edit(outbox(cli, "utilities")[0], {(no, "清理电费"): True})


def test_disk_full_inside_the_merge_rolls_back_and_retries(issued: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL in the merge: one clear line, nothing written, the file stays; the next sync merges it once."""
    path = drop(issued, "u.xlsx", ticked(issued))
    monkeypatch.setenv("LIXIAO_FAULT", "merge:diskfull")
    result = issued("sync")
    assert result.exit_code == 2
    assert result.output.strip().startswith("错误：磁盘已满或无法写入") and "Traceback" not in result.output
    assert statuses(issued) == {} and path.exists()
    monkeypatch.delenv("LIXIAO_FAULT")
    [item] = sync(issued)["files"]
    assert item["outcome"] == "merged" and item["applied"] == 1
    assert issued("verify").exit_code == 0


def test_disk_full_while_writing_reports_keeps_the_old_site(issued: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing a page: the merge stands, the old pages stay whole, no partial file is left."""
    set_settings(issued.data, "sync", reports=True)
    assert issued("report").exit_code == 0
    before = (issued.data / "reports" / "index.html").read_bytes()
    drop(issued, "u.xlsx", ticked(issued))
    monkeypatch.setenv("LIXIAO_FAULT", "report:enospc")
    result = issued("sync")
    assert result.exit_code == 0 and "报表未能更新" in result.output
    assert statuses(issued)[("0803010103", "electricity")][0] == "passed"
    assert (issued.data / "reports" / "index.html").read_bytes() == before
    assert not list((issued.data / "reports").rglob("*.partial"))
    assert issued("report").exit_code == 2  # the same fault, reported as one line by `lixiao report`


def test_file_removed_or_truncated_while_read(issued: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that vanishes, or reads shorter than its size, is deferred and nothing is written."""
    folder = open_folder(issued.data)
    key = secret_key(folder.root)
    gone = process_file(folder, issued.data / "inbox" / "nope.xlsx", key, min_age=0)
    assert gone.outcome == "deferred"
    path = drop(issued, "short.xlsx", ticked(issued))
    real = pipeline.read_regular
    monkeypatch.setattr(pipeline, "read_regular", lambda p: real(p)[:100] if p == path else real(p))
    shrunk = process_file(folder, path, key, min_age=0)
    assert shrunk.outcome == "deferred" and statuses(issued) == {}
    assert folder.store.ledger_rows() == []
    folder.close()


def test_missed_events_are_caught_by_the_rescan(issued: Cli) -> None:
    """With no watcher events at all, the periodic inbox scan still takes every file, once."""
    drop(issued, "a.xlsx", ticked(issued, "0803010103"))
    drop(issued, "b.xlsx", ticked(issued, "0803010104"))
    folder = open_folder(issued.data)
    watcher = Watcher(folder, settle=0.0)
    key = secret_key(folder.root)
    watcher.scan()
    assert watcher.step(key) == 0  # first look: records size and mtime
    assert watcher.step(key) == 2  # unchanged on the second look: processed
    watcher.scan()
    assert watcher.step(key) == 0 and watcher.step(key) == 0  # nothing left, nothing twice
    folder.close()
    assert len(statuses(issued)) == 2


def test_a_long_reader_does_not_block_the_merge(issued: Cli) -> None:
    """A report or shell holding a read transaction (WAL snapshot) does not stop a return being merged."""
    reader = sqlite3.connect(issued.data / "store.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM statuses").fetchone()
    drop(issued, "u.xlsx", ticked(issued))
    [item] = sync(issued)["files"]
    assert item["outcome"] == "merged"
    assert reader.execute("SELECT count(*) FROM statuses").fetchone()[0] == 0  # its snapshot is unchanged
    reader.rollback()
    reader.close()
    assert len(statuses(issued)) == 1


def test_corrupted_store_is_refused_with_restore_advice(issued: Cli) -> None:
    """A store with damaged pages is not written to; the message says how to restore."""
    assert issued("backup", str(issued.data / "backup.db")).exit_code == 0
    db = issued.data / "store.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(db.read_bytes())
    page = 4096
    for offset in range(page * 2, min(len(raw), page * 6)):
        raw[offset] = 0xA5
    db.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="已损坏"):
        Store.open(db)
    result = issued("status", "0803010103")
    assert result.exit_code == 2 and "用 lixiao backup 的备份恢复" in result.output
    (issued.data / "backup.db").replace(db)
    assert issued("verify").exit_code == 0


def test_a_file_whose_processing_raises_does_not_stop_the_watcher(issued: Cli, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An exception on one file is one log line and a later retry; the other file in the same batch merges."""
    drop(issued, "a.xlsx", ticked(issued, "0803010103"))
    drop(issued, "b.xlsx", ticked(issued, "0803010104"))
    monkeypatch.setenv("LIXIAO_FAULT", "daemon:raise:a.xlsx")
    folder = open_folder(issued.data)
    watcher = Watcher(folder, settle=0.0)
    key = secret_key(folder.root)
    watcher.scan()
    watcher.step(key)
    with caplog.at_level("INFO", logger="lixiao.watch"):
        assert watcher.step(key) == 1
    folder.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "处理 a.xlsx 时出错（第 1 次）：InjectedFaultError: 注入的故障（LIXIAO_FAULT=daemon:raise:a.xlsx）；2 秒后重试"]
    assert not any(r.exc_info for r in caplog.records)  # no traceback unless LIXIAO_DEBUG=1
    assert (issued.data / "inbox" / "a.xlsx").exists() and list(statuses(issued)) == [("0803010104", "electricity")]


def test_a_vanished_inbox_is_logged_not_raised(issued: Cli, caplog: pytest.LogCaptureFixture) -> None:
    """If inbox/ disappears (a network share drops), the rescan logs one line and the watcher carries on."""
    folder = open_folder(issued.data)
    watcher = Watcher(folder, settle=0.0)
    (issued.data / "inbox").rename(issued.data / "inbox-away")
    with caplog.at_level("INFO", logger="lixiao.watch"):
        watcher.scan()
    folder.close()
    assert [r.getMessage()[:7] for r in caplog.records] == ["无法读取收件箱"]
