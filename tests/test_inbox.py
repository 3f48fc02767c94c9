"""Whatever lands in the inbox — odd names, links, FIFOs, huge files, files copied a moment ago — is processed
or refused with a reason, never blocks the others, and a crash after the commit never loses a receipt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from lixiao.sync.takeback.inbox import safe_name

from .conftest import Cli, drop, edit, outbox, rows, set_settings, statuses, sync


def ticked(cli: Cli, no: str = "0803010103") -> bytes:
    """The utilities workbook with one student's 清理电费 ticked."""
    return edit(outbox(cli, "utilities")[0], {(no, "清理电费"): True})


def put(cli: Cli, raw_name: bytes, data: bytes) -> Path:
    """Write a file whose name is raw bytes (as unzip leaves a Windows archive) into the inbox, aged 30 s."""
    path = Path(os.fsdecode(os.fsencode(cli.data / "inbox") + b"/" + raw_name))
    path.write_bytes(data)
    os.utime(path, (path.stat().st_mtime - 30,) * 2)
    return path


def test_names_the_os_allows_are_processed_and_shown_safely(issued: Cli) -> None:
    """GBK bytes, a newline, a leading dot, a backslash and a 245-byte name: each merged, with a UTF-8 name of at
    most 80 characters in the JSON, ledger and receipt file name (the GBK one read as Chinese); nothing is left in
    the inbox."""
    names = [
        "水电".encode("gbk") + b".xlsx",
        "行1\n行2.xlsx".encode(),
        ".隐藏的交回.xlsx".encode(),
        b"a\\b.xlsx",
        ("长" * 80).encode() + b".xlsx",
    ]
    students = ["0803010103", "0803010104", "0803010105", "0801020227", "0701020201"]
    for raw, no in zip(names, students, strict=True):
        put(issued, raw, ticked(issued, no))
    doc = sync(issued)
    assert [f["outcome"] for f in doc["files"]] == ["merged"] * 5
    for item in doc["files"]:
        assert len(item["file"]) <= 80 and "\n" not in item["file"] and not item["file"].startswith(".")
        assert (issued.data / item["receipt"]).exists()
        assert len(os.fsencode(Path(item["receipt"]).name)) < 255
    assert doc["files"][0]["file"] == "水电.xlsx" and "-水电-" in doc["files"][0]["receipt"]
    assert all(statuses(issued)[(no, "electricity")][0] == "passed" for no in students)
    assert list((issued.data / "inbox").iterdir()) == []
    assert issued("verify").exit_code == 0


def test_safe_name_masks_ids_and_keeps_the_extension() -> None:
    """A 身份证号 in a file name is masked; a long name keeps its extension."""
    assert safe_name("430103200401010031回执.xlsx") == "430103********0031回执.xlsx"
    long = safe_name("名" * 300 + ".xlsx")
    assert len(long) == 80 and long.endswith("….xlsx")


def test_a_symlink_is_refused_not_followed_nor_moved(issued: Cli) -> None:
    """A link in the inbox (to .secret or the store) is removed and explained; rejected/ holds no link."""
    (issued.data / "inbox" / "secret.xlsx").symlink_to(issued.data / ".secret")
    (issued.data / "inbox" / "db.xlsx").symlink_to(issued.data / "store.db")
    drop(issued, "good.xlsx", ticked(issued))
    doc = sync(issued)
    outcomes = {f["file"]: f["outcome"] for f in doc["files"]}
    assert outcomes == {"secret.xlsx": "rejected", "db.xlsx": "rejected", "good.xlsx": "merged"}
    assert not any(p.is_symlink() for p in (issued.data / "rejected").iterdir())
    assert (issued.data / "rejected" / "secret.xlsx.说明.txt").read_text("utf-8").count("符号链接") == 1
    assert (issued.data / ".secret").exists() and (issued.data / "store.db").exists()
    assert issued("verify").exit_code == 0


def test_a_fifo_does_not_hang_the_sync(issued: Cli) -> None:
    """A named pipe in the inbox is refused at once (opening it would block forever)."""
    os.mkfifo(issued.data / "inbox" / "pipe.xlsx")
    drop(issued, "good.xlsx", ticked(issued))
    outcomes = {f["file"]: f["outcome"] for f in sync(issued)["files"]}
    assert outcomes == {"pipe.xlsx": "rejected", "good.xlsx": "merged"}


def test_a_file_over_the_size_cap_is_refused_without_being_read(issued: Cli) -> None:
    """Over [sync] max_file_mb the file goes to rejected/ with the cap named; the next file is still merged."""
    set_settings(issued.data, "sync", max_file_mb=0.05)
    big = issued.data / "inbox" / "big.xlsx"
    with big.open("wb") as handle:
        handle.truncate(200 * 1024)
    os.utime(big, (big.stat().st_mtime - 30,) * 2)
    drop(issued, "good.xlsx", ticked(issued))
    items = {f["file"]: f for f in sync(issued)["files"]}
    assert items["big.xlsx"]["outcome"] == "rejected" and "too_large" in items["big.xlsx"]["reasons"][0]
    assert "0.05 MB" in items["big.xlsx"]["reasons"][0]
    assert items["good.xlsx"]["outcome"] == "merged"
    assert (issued.data / "rejected" / "big.xlsx").exists()


def test_a_wrong_setting_is_a_clear_error(issued: Cli) -> None:
    """A negative or non-numeric [sync] value stops sync with one line naming the key."""
    set_settings(issued.data, "sync", max_revocations="many")
    result = issued("sync")
    assert result.exit_code == 2 and "max_revocations" in result.output


def test_copy_then_sync_at_once_processes_the_file(issued: Cli) -> None:
    """`cp f inbox/ && lixiao sync`: a file written a moment ago is waited for, then merged (not deferred)."""
    (issued.data / "inbox" / "fresh.xlsx").write_bytes(ticked(issued))
    [item] = sync(issued)["files"]
    assert item["outcome"] == "merged"


def test_a_receipt_lost_in_a_crash_after_the_commit_is_written_at_the_next_start(issued: Cli) -> None:
    """kill -9 right after the merge commits: the store has the ticks, the receipt is missing; the next sync
    writes it from the ledger, and the file is not applied twice."""
    drop(issued, "u.xlsx", ticked(issued))
    env = {**os.environ, "LIXIAO_FAULT": "receipt:kill"}
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(issued.data), "sync"],
                          env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == -9
    assert statuses(issued)[("0803010103", "electricity")] == ("passed", 1)
    pending = issued("verify").output  # pending, not damage: the next sync finishes it
    assert "存档在中断前未完成" in pending and "回执尚未写出" in pending
    assert not list((issued.data / "receipts").glob("*.xlsx"))
    doc = sync(issued)
    assert [f["outcome"] for f in doc["files"]] in ([], ["duplicate"])
    [receipt] = (issued.data / "receipts").glob("*-回执.xlsx")
    applied = list(openpyxl.load_workbook(receipt)["已记录"].iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in applied] == ["0803010103"] and applied[0][4] == "✓ 已通过"
    assert statuses(issued)[("0803010103", "electricity")] == ("passed", 1)
    assert issued("verify").exit_code == 0


def test_returns_in_a_subfolder_or_without_an_extension_are_taken(issued: Cli) -> None:
    """An unzipped archive's subfolder and a return saved without an extension are merged, not ignored;
    Excel's own extensionless temp file is still ignored."""
    (issued.data / "inbox" / "来自邮件").mkdir()
    drop(issued, "来自邮件/水电.xlsx", ticked(issued, "0803010103"))
    drop(issued, "返回", ticked(issued, "0803010104"))
    drop(issued, "3A9F0C21", b"excel temp")
    outcomes = {f["file"]: f["outcome"] for f in sync(issued)["files"]}
    assert outcomes == {"水电.xlsx": "merged", "返回": "merged"}
    assert statuses(issued)[("0803010104", "electricity")][0] == "passed"
    assert not (issued.data / "inbox" / "来自邮件" / "水电.xlsx").exists()


def test_confirm_applies_only_to_a_held_file(issued: Cli) -> None:
    """`sync --confirm` on a file that was never held is refused (it would skip the revocation check)."""
    path = issued.data.parent / "new.xlsx"
    path.write_bytes(ticked(issued))
    result = issued("sync", "--confirm", str(path))
    assert result.exit_code == 2 and "不是待确认（held/）的文件" in result.output
    assert statuses(issued) == {}


def test_confirm_with_a_path_relative_to_the_folder_clears_held(issued: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Confirmed from inside the data folder as held/FILE: merged, and held/ keeps neither file nor note."""
    for no in ("0803010103", "0803010104"):
        issued("set", no, "electricity", "passed")
    issued("issue", "--checkpoint", "utilities")
    set_settings(issued.data, "sync", max_revocations=1)
    data = edit(outbox(issued, "utilities")[-1], {("0803010103", "清理电费"): False, ("0803010104", "清理电费"): False})
    drop(issued, "two.xlsx", data)
    assert sync(issued)["files"][0]["outcome"] == "held"
    monkeypatch.chdir(issued.data)
    result = issued("sync", "--confirm", "held/two.xlsx")
    assert result.exit_code == 0, result.output
    assert list((issued.data / "held").iterdir()) == []
    assert statuses(issued)[("0803010103", "electricity")][0] == "pending"


def test_an_id_number_typed_into_the_id_column_is_masked_in_the_receipt(issued: Cli) -> None:
    """A full 身份证号 typed where a 学号 belongs is reported masked in the receipt, the JSON and the ledger."""
    full = "43010320040101003X"
    drop(issued, "id.xlsx", edit(outbox(issued, "utilities")[0], {("0803010105", "学号"): full}))
    doc = sync(issued)
    [item] = doc["files"]
    masked = "430103********003X"
    assert full not in json.dumps(doc, ensure_ascii=False) and any(masked in r for r in item["reasons"])
    book = openpyxl.load_workbook(issued.data / item["receipt"])
    text = " ".join(str(c) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row if c)
    assert full not in text and masked in text
    ledger = rows(issued, "SELECT detail FROM returns")
    assert full not in str(ledger)


def test_a_rebuilt_receipt_says_what_the_first_one_said(issued: Cli) -> None:
    """A receipt deleted and rebuilt later (the chain has moved on) is the same: applied rows and the chain
    position of its own commit."""
    drop(issued, "u.xlsx", ticked(issued))
    [item] = sync(issued)["files"]
    path = issued.data / item["receipt"]

    def content() -> list[list[tuple[object, ...]]]:
        book = openpyxl.load_workbook(path)
        return [[r for r in ws.iter_rows(values_only=True) if r[0] != "处理时间"] for ws in book.worksheets]

    first = content()
    path.unlink()
    assert issued("set", "0803010104", "electricity", "passed").exit_code == 0
    sync(issued)
    assert content() == first and any(r[0] == "审计链位置" for r in first[0])


def test_a_held_return_dropped_again_leaves_one_copy_in_held(issued: Cli) -> None:
    """The same held return returned twice stays one file in held/; after --confirm, held/ is empty and verify
    passes (no second copy left without its hold)."""
    for no in ("0803010103", "0803010104"):
        issued("set", no, "electricity", "passed")
    issued("issue", "--checkpoint", "utilities")
    set_settings(issued.data, "sync", max_revocations=1)
    data = edit(outbox(issued, "utilities")[-1], {("0803010103", "清理电费"): False, ("0803010104", "清理电费"): False})
    drop(issued, "a.xlsx", data)
    assert sync(issued)["files"][0]["outcome"] == "held"
    drop(issued, "b.xlsx", data)
    assert sync(issued)["files"][0]["outcome"] == "held"
    assert sorted(p.name for p in (issued.data / "held").glob("*.xlsx")) == ["a.xlsx"]
    assert issued("sync", "--confirm", str(issued.data / "held" / "a.xlsx")).exit_code == 0
    assert list((issued.data / "held").iterdir()) == [] and issued("verify").exit_code == 0


def test_receipt_listings_are_masked_cell_by_cell_in_one_pass() -> None:
    """Masking a whole listing at once gives what masking each cell gives, with a separator typed in a cell too."""
    from lixiao.core.manual.identity import mask_ids_in_text
    from lixiao.sync.takeback.receipts import _masked

    for lines in ([["43010320040101003X", "0803010105", "备注 43010320040101003X。"], [], ["4301032004010100311"]],
                  [["a\x01 43010320040101003X", ""], ["43010320040101003X"]]):
        assert _masked(lines) == [[mask_ids_in_text(cell) for cell in line] for line in lines]
        assert "43010320040101003X" not in str(_masked(lines))
