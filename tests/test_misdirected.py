"""A refusal for where a file was put is not a verdict on the file (misdirected: final for that place only), and
names read as people wrote them (GBK file and attachment names as Chinese)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path

import openpyxl
import pytest

from lixiao.core.clearance.clearance import Clearance
from lixiao.core.clearance.review import open_items
from lixiao.core.storage.ledger import TRANSITIONS, Channel, LedgerState, Origin
from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.live.mailmsg import read_message
from lixiao.sync.takeback.pipeline import process_bytes

from .conftest import ROSTER, Cli, edit, outbox, statuses

POWER = "水电通信中心离校点"
DORM = "宿管中心离校点"


def _share(cli: Cli, tmp_path: Path) -> Path:
    share = tmp_path / "共享"
    path = cli.data / "lixiao.toml"
    path.write_text(path.read_text("utf-8") + f'\n[delivery]\nshare_root = "{share}"\n', "utf-8")
    assert cli("send", "--checkpoint", "dorm", "--checkpoint", "utilities").exit_code == 0
    return share


def _put(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    past = time.time() - 60
    os.utime(path, (past, past))


def _sync(cli: Cli) -> list[dict[str, object]]:
    result = cli("sync", "--json")
    files: list[dict[str, object]] = json.loads(result.output)["files"]
    return files


def _ledger(cli: Cli) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(cli.data / "store.db") as conn:
        return list(conn.execute("SELECT file_name, state, coalesce(outcome, ''), sender FROM returns"))


def _passed(cli: Cli) -> set[tuple[str, str]]:
    return {key for key, (status, _) in statuses(cli).items() if status == "passed"}


def test_misplaced_first_then_placed_right_is_merged_with_its_own_receipt(cli: Cli, tmp_path: Path) -> None:
    """宿管's workbook in 水电's 交回/ is refused (wrong folder); the same bytes in 宿管's 交回/ are merged, and 宿管's
    回执/ holds the merge's receipt and no word of 水电; verify passes after each step."""
    share = _share(cli, tmp_path)
    dorm = next((share / DORM / "待办").glob("*.xlsx"))
    data = edit(dorm, {(ROSTER[0].student_no, "清理宿舍物品"): True})
    _put(share / POWER / "交回" / "宿管-已办.xlsx", data)
    [wrong] = _sync(cli)
    assert wrong["outcome"] == "rejected" and "放进“宿管中心离校点”自己的交回文件夹" in str(wrong["reasons"])
    assert (ROSTER[0].student_no, "dorm_items") not in _passed(cli)
    assert _ledger(cli) == [("宿管-已办.xlsx", "misdirected", "misdirected", POWER)]
    assert cli("verify").exit_code == 0
    _put(share / DORM / "交回" / "宿管-已办.xlsx", data)  # the office copies it into its own folder
    [right] = _sync(cli)
    assert right["outcome"] == "merged" and right["applied"] == 1
    assert (ROSTER[0].student_no, "dorm_items") in _passed(cli)
    assert _ledger(cli) == [("宿管-已办.xlsx", "merged", "merged", DORM)]
    receipts = share / DORM / "交回" / "回执"
    assert [p.name for p in receipts.iterdir()] == ["宿管-已办-回执.xlsx"]
    book = openpyxl.load_workbook(receipts / "宿管-已办-回执.xlsx", read_only=True)
    text = " ".join(str(v) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for v in row if v)
    assert "已合并" in text and DORM in text and "水电" not in text
    assert "宿管中心" in (share / POWER / "交回" / "回执" / "宿管-已办.说明.txt").read_text("utf-8")
    verify = cli("verify")
    assert verify.exit_code == 0, verify.output


def test_the_same_misplacement_again_is_a_repeat_and_a_merged_file_stays_merged(cli: Cli, tmp_path: Path) -> None:
    """The same bytes into the same wrong folder again are refused without a second take (its reason said
    again); once merged from the right folder, a copy in the wrong folder is a duplicate, not re-examined."""
    share = _share(cli, tmp_path)
    dorm = next((share / DORM / "待办").glob("*.xlsx"))
    data = edit(dorm, {(ROSTER[1].student_no, "清理宿舍物品"): True})
    _put(share / POWER / "交回" / "a.xlsx", data)
    assert _sync(cli)[0]["outcome"] == "rejected"
    _put(share / POWER / "交回" / "a.xlsx", data)
    [again] = _sync(cli)
    assert again["outcome"] == "rejected" and "宿管中心离校点" in str(again["reasons"])
    with sqlite3.connect(cli.data / "store.db") as conn:
        staged = conn.execute("SELECT count(*) FROM audit WHERE kind = 'ledger' AND new = 'staged/'").fetchone()[0]
    assert staged == 1  # looked at once for that folder
    _put(share / DORM / "交回" / "a.xlsx", data)
    assert _sync(cli)[0]["outcome"] == "merged"
    _put(share / POWER / "交回" / "a.xlsx", data)
    assert _sync(cli)[0]["outcome"] == "duplicate"
    assert cli("verify").exit_code == 0


def test_a_crash_while_the_right_office_s_copy_merges_loses_and_repeats_nothing(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills inside the merge of the re-take from the right folder: nothing is applied, the file stays in
    交回/, verify passes; the next sync merges it once."""
    share = _share(cli, tmp_path)
    dorm = next((share / DORM / "待办").glob("*.xlsx"))
    data = edit(dorm, {(ROSTER[3].student_no, "清理宿舍物品"): True})
    _put(share / POWER / "交回" / "c.xlsx", data)
    _sync(cli)
    _put(share / DORM / "交回" / "c.xlsx", data)
    monkeypatch.setenv("LIXIAO_FAULT", "merge:diskfull")
    assert cli("sync").exit_code == 2
    assert (share / DORM / "交回" / "c.xlsx").exists() and (ROSTER[3].student_no, "dorm_items") not in _passed(cli)
    assert cli("verify").exit_code == 0
    monkeypatch.delenv("LIXIAO_FAULT")
    [item] = _sync(cli)
    assert item["outcome"] == "merged" and item["applied"] == 1
    assert _ledger(cli) == [("c.xlsx", "merged", "merged", DORM)]
    assert cli("verify").exit_code == 0


def test_a_misdirected_file_is_in_review_until_the_right_office_returns_it(cli: Cli, tmp_path: Path) -> None:
    """lixiao review lists the misplaced file as a refused file; once merged from the right folder it leaves the
    queue by itself."""
    share = _share(cli, tmp_path)
    dorm = next((share / DORM / "待办").glob("*.xlsx"))
    data = edit(dorm, {(ROSTER[2].student_no, "清理宿舍物品"): True})
    _put(share / POWER / "交回" / "b.xlsx", data)
    _sync(cli)
    listed = cli("review", "list")
    assert listed.exit_code == 0 and "b.xlsx" in listed.output and "宿管中心离校点" in listed.output
    _put(share / DORM / "交回" / "b.xlsx", data)
    _sync(cli)
    folder = open_folder(cli.data)
    try:
        assert [i for i in open_items(Clearance(folder.store, folder.flow)) if i.kind == "file"] == []
    finally:
        folder.close()


def test_the_ledger_allows_a_misdirected_file_only_to_be_staged_again() -> None:
    """Misdirected is left only by staging the file again (a new take); merged, rejected and quarantined are
    never left: decisions about content are final."""
    assert TRANSITIONS[LedgerState.MISDIRECTED] == frozenset({LedgerState.STAGED})
    assert LedgerState.MISDIRECTED in TRANSITIONS[LedgerState.STAGED]
    assert all(not TRANSITIONS[s] for s in (LedgerState.MERGED, LedgerState.REJECTED, LedgerState.QUARANTINED))
    assert Origin(Channel.SHARE, office="utilities").place == "share:utilities"
    assert Origin(Channel.MAIL, office="dorm", sender="a@x.cn").place == "mail:a@x.cn"


def test_a_gbk_named_file_in_the_inbox_is_shown_in_chinese(issued: Cli) -> None:
    """A file named with raw GBK bytes (a Windows zip unpacked on Linux) merges; the outcome, the ledger and the
    receipt's file name show the Chinese name; verify passes."""
    data = edit(outbox(issued, "utilities")[0], {(ROSTER[0].student_no, "清理电费"): True})
    raw = os.fsencode(issued.data / "inbox") + b"/" + "宿管-已办.xlsx".encode("gbk")
    _put(Path(os.fsdecode(raw)), data)
    [item] = _sync(issued)
    assert item["outcome"] == "merged" and item["file"] == "宿管-已办.xlsx"
    assert Path(str(item["receipt"])).name.endswith(".xlsx") and "-宿管-已办-" in str(item["receipt"])
    assert (issued.data / str(item["receipt"])).is_file()
    assert [row[0] for row in _ledger(issued)] == ["宿管-已办.xlsx"]
    assert not os.path.lexists(os.fsdecode(raw))
    assert issued("verify").exit_code == 0


def _mail(disposition: bytes, data: bytes, content_type: bytes = b"application/octet-stream") -> bytes:
    return (b"From: dorm@lixiao.test\r\nTo: lixiao@lixiao.test\r\nSubject: Re\r\nMessage-ID: <gbk@x>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--XX\r\nContent-Type: " + content_type + b"\r\n"
            b"Content-Disposition: " + disposition + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(data).replace(b"\n", b"\r\n") + b"--XX--\r\n")


def test_gbk_attachment_names_every_way_email_carries_them(issued: Cli) -> None:
    """An attachment named in GBK — RFC 2231 (gbk, gb18030), an encoded word (gb2312) or raw 8-bit header bytes
    — is read as its Chinese name, merges under it, and its receipt is named after it; verify passes."""
    gbk = "宿管-已办.xlsx".encode("gbk")
    ways = {
        "rfc2231": b"attachment; filename*=gbk''" + urllib.parse.quote_from_bytes(gbk).encode(),
        "rfc2231-gb18030": b"attachment; filename*=gb18030''" + urllib.parse.quote_from_bytes(gbk).encode(),
        "encoded-word": b'attachment; filename="=?gb2312?B?' + base64.b64encode(gbk) + b'?="',
        "raw": b'attachment; filename="' + gbk + b'"',
    }
    folder = open_folder(issued.data)
    try:
        for n, (way, disposition) in enumerate(ways.items()):
            data = edit(outbox(issued, "utilities")[0], {(ROSTER[n].student_no, "清理电费"): True})
            [(name, got)] = read_message(_mail(disposition, data)).attachments
            assert (way, name, got) == (way, "宿管-已办.xlsx", data)
            origin = Origin(Channel.MAIL, office="utilities|", sender="dorm@lixiao.test", message_id="<gbk@x>",
                            offices=("utilities|",))
            outcome = process_bytes(folder, name, got, origin, secret_key(issued.data))
            assert (outcome.outcome, outcome.file) == ("merged", "宿管-已办.xlsx"), outcome.reasons
            assert "-宿管-已办-" in outcome.receipt
        raw_type = read_message(_mail(b"attachment", b"x", b'application/octet-stream; name="' + gbk[:-5] + b'.zip"'))
        assert [name for name, _ in raw_type.archives] == ["宿管-已办.zip"] and raw_type.attachments == []
    finally:
        folder.close()
    assert issued("verify").exit_code == 0


def test_a_message_key_is_its_message_id_with_its_attachments() -> None:
    """Two messages with one Message-ID but different workbooks have different keys; the same message twice has
    the same key; a message without attachments is keyed by its Message-ID alone."""
    one = read_message(_mail(b'attachment; filename="a.xlsx"', b"one"))
    two = read_message(_mail(b'attachment; filename="a.xlsx"', b"two"))
    assert one.message_id == two.message_id == "<gbk@x>"
    assert one.key != two.key and one.key == read_message(_mail(b'attachment; filename="a.xlsx"', b"one")).key
    bare = read_message(b"From: a@x.cn\r\nMessage-ID: <bare@x>\r\nSubject: hi\r\n\r\nhello\r\n")
    assert bare.key == "<bare@x>"
