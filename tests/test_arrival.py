"""Files still arriving (a Windows copy keeps the source's old mtime): judged by their bytes, never by their age."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from lixiao.sync.datafolder import DataFolderError, open_folder, secret_key
from lixiao.sync.live.shares import take_share_returns
from lixiao.sync.takeback import arrival
from lixiao.sync.takeback.arrival import ARRIVING, missing_part, zip_complete
from lixiao.sync.takeback.inbox import sync_settings

from .conftest import ROSTER, Cli, edit, outbox, rows, set_settings, statuses, sync

HOURS_AGO = time.time() - 5 * 3600  # what a copy of a file saved this morning carries


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at

    def minutes(self, count: float) -> None:
        """Move on ``count`` minutes."""
        self.at += count * 60


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """arrival.now under the test's control (the ten-minute rule without sleeping)."""
    fake = Clock()
    monkeypatch.setattr(arrival, "now", fake)
    return fake


def _write_old(path: Path, data: bytes) -> Path:
    """Write ``data`` the way a Windows copy leaves it: with the source's mtime, hours ago."""
    path.write_bytes(data)
    os.utime(path, (HOURS_AGO, HOURS_AGO))
    return path


def _ticked(cli: Cli, no: str = ROSTER[0].student_no) -> bytes:
    return edit(outbox(cli, "utilities")[0], {(no, "清理电费"): True})


def _ledger(cli: Cli) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in rows(cli, "SELECT file_name, coalesce(outcome, state) FROM returns "
                                         "ORDER BY received_at")]


def _arriving(cli: Cli) -> dict[str, dict[str, object]]:
    path = cli.data / ARRIVING
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def test_a_zip_cut_anywhere_is_incomplete_and_a_whole_one_is_not(issued: Cli) -> None:
    """A real workbook cut at any point — in a member, at or inside the central directory, inside the end record —
    or preallocated with NULs is still arriving; the whole file (with or without a zip comment) is not."""
    whole = outbox(issued, "utilities")[0].read_bytes()
    end = whole.rfind(b"PK\x05\x06")
    directory = int.from_bytes(whole[end + 16:end + 20], "little")
    cuts = [0, 3, 30, len(whole) // 2, directory, directory + 1, directory + 60, (directory + end) // 2, end,
            end + 10, len(whole) - 1]
    assert 0 < directory < end < len(whole)
    for cut in cuts:
        assert not zip_complete(whole[:cut]) and missing_part(whole[:cut]), cut
    assert missing_part(whole[: len(whole) // 3] + b"\x00" * (len(whole) - len(whole) // 3))  # space reserved
    assert missing_part(b"\x00" * len(whole))
    assert zip_complete(whole) and missing_part(whole) == ""
    buffer = io.BytesIO(whole)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.comment = b"a comment after the end record"
    commented = buffer.getvalue()
    assert zip_complete(commented) and not zip_complete(commented[:-5])
    assert missing_part(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600) == ""  # an .xls: refused at once


def test_an_incomplete_inbox_file_with_an_old_mtime_waits_then_is_refused(issued: Cli, clock: Clock) -> None:
    """A truncated copy hours old by its mtime is left in the inbox (no ledger row, nothing in rejected/) across
    one-shot syncs; ten minutes after lixiao first saw it so, it is refused with what to do, in Chinese."""
    whole = _ticked(issued)
    path = _write_old(issued.data / "inbox" / "水电.xlsx", whole[: len(whole) * 2 // 3])
    [item] = sync(issued)["files"]
    assert item["outcome"] == "deferred" and "没有复制完整" in item["reasons"][0]
    assert path.exists() and _ledger(issued) == [] and not list((issued.data / "rejected").iterdir())
    assert _arriving(issued)[str(path)]["since"] == clock.at  # when lixiao saw it, not its mtime
    clock.minutes(9.5)
    assert sync(issued)["files"][0]["outcome"] == "deferred" and path.exists() and _ledger(issued) == []
    clock.minutes(0.5)
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("truncated：文件不完整")
    assert "等了 10 分钟" in item["reasons"][0] and "重新复制一次" in item["reasons"][0]
    assert not path.exists() and (issued.data / "rejected" / "水电.xlsx").exists()
    assert "重新复制一次" in (issued.data / "rejected" / "水电.xlsx.说明.txt").read_text("utf-8")
    assert _ledger(issued) == [("水电.xlsx", "rejected")] and _arriving(issued) == {}


def test_a_copy_that_moves_on_restarts_the_clock_and_is_merged_once_whole(issued: Cli, clock: Clock) -> None:
    """Unchanged means the same bytes: a copy that moved on waits its ten minutes afresh, and once whole it is
    merged — only the whole file's hash is in the ledger."""
    whole = _ticked(issued)
    path = _write_old(issued.data / "inbox" / "水电.xlsx", whole[:1000])
    assert sync(issued)["files"][0]["outcome"] == "deferred"
    clock.minutes(8)
    _write_old(path, whole[:5000])
    assert sync(issued)["files"][0]["outcome"] == "deferred"
    clock.minutes(8)  # sixteen minutes after the first sight, eight after this content's
    assert sync(issued)["files"][0]["outcome"] == "deferred" and _ledger(issued) == []
    _write_old(path, whole)
    [item] = sync(issued)["files"]
    assert item["outcome"] == "merged" and not path.exists()
    assert _ledger(issued) == [("水电.xlsx", "merged")] and _arriving(issued) == {}
    assert statuses(issued)[(ROSTER[0].student_no, "electricity")][0] == "passed"


def test_a_decided_hash_of_a_partial_copy_does_not_block_the_next_copy(issued: Cli, clock: Clock) -> None:
    """An empty file refused after its ten minutes leaves its hash decided; the next copy starting out empty has
    that same hash, yet it waits (not a duplicate, not moved) and is merged once whole."""
    first = _write_old(issued.data / "inbox" / "a.xlsx", b"")
    assert sync(issued)["files"][0]["outcome"] == "deferred"
    clock.minutes(10)
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("empty：") and not first.exists()
    second = _write_old(issued.data / "inbox" / "b.xlsx", b"")
    [item] = sync(issued)["files"]
    assert item["outcome"] == "deferred" and second.exists()
    _write_old(second, _ticked(issued))
    assert sync(issued)["files"][0]["outcome"] == "merged"
    assert _ledger(issued) == [("a.xlsx", "rejected"), ("b.xlsx", "merged")]


def test_a_share_copy_in_progress_is_neither_moved_nor_refused(cli: Cli, tmp_path: Path, clock: Clock) -> None:
    """A truncated copy in an office's 交回/ with an old mtime stays there (not in 已处理/, no .说明.txt, no ledger
    row); once whole it is merged, moved to 已处理/ and its receipt written to 回执/."""
    share = tmp_path / "共享"
    set_settings(cli.data, "delivery", share_root=str(share))
    assert cli("send", "--checkpoint", "dorm").exit_code == 0
    issued = next((share / "宿管中心离校点" / "待办").glob("*.xlsx"))
    whole = edit(issued, {(ROSTER[0].student_no, "清理宿舍物品"): True})
    back = share / "宿管中心离校点" / "交回"
    path = _write_old(back / "宿管.xlsx", whole[: len(whole) - 40])  # cut inside the end record
    [item] = json.loads(cli("sync", "--json").output)["files"]
    assert item["outcome"] == "deferred" and path.exists()
    assert not (back / "已处理").exists() or not list((back / "已处理").iterdir())
    assert not (back / "回执").exists() or not list((back / "回执").iterdir())
    assert _ledger(cli) == []
    clock.minutes(5)
    _write_old(path, whole)
    [item] = json.loads(cli("sync", "--json").output)["files"]
    assert item["outcome"] == "merged" and not path.exists() and (back / "已处理" / "宿管.xlsx").exists()
    assert (back / "回执" / "宿管-回执.xlsx").is_file() and _ledger(cli) == [("宿管.xlsx", "merged")]


def test_the_daemon_takes_a_share_file_only_when_two_polls_agree(cli: Cli, tmp_path: Path) -> None:
    """With the daemon's memory of the last poll, a share file is taken at the poll after the one that first saw
    its size and mtime, whatever its mtime's age."""
    share = tmp_path / "共享"
    set_settings(cli.data, "delivery", share_root=str(share))
    assert cli("send", "--checkpoint", "dorm").exit_code == 0
    issued = next((share / "宿管中心离校点" / "待办").glob("*.xlsx"))
    path = _write_old(share / "宿管中心离校点" / "交回" / "宿管.xlsx",
                      edit(issued, {(ROSTER[1].student_no, "清理宿舍物品"): True}))
    folder = open_folder(cli.data)
    seen: dict[Path, tuple[int, int]] = {}
    try:
        assert take_share_returns(folder, secret_key(cli.data), min_age=0, last_seen=seen) == []
        assert path.exists() and path in seen
        [outcome] = take_share_returns(folder, secret_key(cli.data), min_age=0, last_seen=seen)
    finally:
        folder.close()
    assert outcome.outcome == "merged" and not path.exists() and seen == {}


def test_incomplete_after_minutes_setting(cli: Cli) -> None:
    """[sync] incomplete_after_minutes defaults to 10; a negative value is a clear error; 0 refuses at once."""
    assert sync_settings(cli.data).incomplete_after_minutes == 10
    set_settings(cli.data, "sync", incomplete_after_minutes=-1)
    with pytest.raises(DataFolderError, match="incomplete_after_minutes 应为非负数"):
        sync_settings(cli.data)
    set_settings(cli.data, "sync", incomplete_after_minutes=0)
    assert sync_settings(cli.data).incomplete_after_minutes == 0


def test_with_no_wait_an_incomplete_file_is_refused_at_once(issued: Cli) -> None:
    """incomplete_after_minutes = 0: a truncated inbox file is refused at first sight, with what to do."""
    set_settings(issued.data, "sync", incomplete_after_minutes=0)
    whole = _ticked(issued)
    _write_old(issued.data / "inbox" / "半个.xlsx", whole[: len(whole) // 2])
    [item] = sync(issued)["files"]
    assert item["outcome"] == "rejected" and item["reasons"][0].startswith("truncated：")
    assert "重新复制一次" in item["reasons"][0] and _arriving(issued) == {}
