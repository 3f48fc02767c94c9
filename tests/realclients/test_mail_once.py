"""Mail exactly once by message AND content, against real servers (Dovecot IMAP, aiosmtpd SMTP on loopback): a
reused Message-ID with another workbook is another message, a true redelivery is taken once; a GBK attachment name
is read as Chinese; a .zip gets asked for the workbook itself."""

from __future__ import annotations

import base64
import email.policy
import email.utils
import urllib.parse
from email.message import EmailMessage

import pytest

from ..conftest import ROSTER, edit
from .test_mail_channel import XLSX, Mailbox, attachments, box, passed, returns, workbook  # noqa: F401 - box: the fixture

pytestmark = pytest.mark.slow  # real servers: run by make test, not by the fast suite


def _replies(mailbox: Mailbox, message_id: str) -> list[EmailMessage]:
    return [m for m in mailbox.office_mail() if str(m["In-Reply-To"]) == message_id]


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _verified(mailbox: Mailbox) -> None:
    result = mailbox.cli("verify")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_reused_message_id_with_another_workbook_is_taken_and_a_redelivery_once(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """Two mails with one Message-ID and different workbooks both merge, each with a ledger row and a reply; the
    first message appended to the mailbox a second time is taken once (no row, no reply); verify passes."""
    reused = email.utils.make_msgid(domain="lixiao.test")
    first = edit(workbook(box.data, "dorm"), {(ROSTER[0].student_no, "清理宿舍物品"): True})
    second = edit(workbook(box.data, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
    sent = box.send_return([("第一次.xlsx", first)], message_id=reused)
    box.send_return([("第二次.xlsx", second)], message_id=reused)  # a resend script reusing the Message-ID
    box.servers.deliver(box.office, box.address, sent.as_bytes(policy=email.policy.SMTP))  # appended again
    result = box.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(returns(box.data)) == [("第一次.xlsx", "merged", "mail", box.office),
                                         ("第二次.xlsx", "merged", "mail", box.office)]
    assert passed(box.data) == {(ROSTER[0].student_no, "dorm_items"), (ROSTER[1].student_no, "dorm_items")}
    replies = _replies(box, reused)
    assert len(replies) == 2
    receipts = [name for r in replies for name in attachments(r)]
    assert len(receipts) == 2 and all(name.endswith("回执.xlsx") for name in receipts)
    assert sum("第一次.xlsx：已合并" in _body(r) for r in replies) == 1
    assert sum("第二次.xlsx：已合并" in _body(r) for r in replies) == 1
    _verified(box)
    again = box.cli("fetch", "--json")
    assert again.returncode == 0 and '"messages": 0' in again.stdout and len(_replies(box, reused)) == 2


def test_a_gbk_attachment_name_is_read_as_chinese_and_a_zip_is_asked_for_the_workbook(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """An old client's raw 8-bit GBK attachment name and an RFC 2231 gbk one merge under the Chinese name, the
    receipt in the reply is named after it; a .zip attachment gets a reply asking for the .xlsx itself, not
    “no workbook”; verify passes."""
    gbk = "宿管-已办.xlsx".encode("gbk")
    data = edit(workbook(box.data, "dorm"), {(ROSTER[2].student_no, "清理宿舍物品"): True})
    raw_id = email.utils.make_msgid(domain="lixiao.test")
    box.servers.send(box.office, box.office_password, _raw_mail(box, raw_id, b'filename="' + gbk + b'"', data),
                     [box.address])
    other = edit(workbook(box.data, "dorm"), {(ROSTER[3].student_no, "清理宿舍物品"): True})
    rfc_id = email.utils.make_msgid(domain="lixiao.test")
    quoted = urllib.parse.quote_from_bytes("宿管-第二份.xlsx".encode("gbk")).encode()
    box.servers.send(box.office, box.office_password, _raw_mail(box, rfc_id, b"filename*=gbk''" + quoted, other),
                     [box.address])
    zipped = EmailMessage()
    zipped["From"], zipped["To"], zipped["Subject"] = box.office, box.address, "交回"
    zipped["Message-ID"] = zip_id = email.utils.make_msgid(domain="lixiao.test")
    zipped.set_content("附件是压缩包")
    zipped.add_attachment(b"PK\x05\x06" + bytes(18), maintype="application", subtype="zip", filename="宿管.zip")
    box.servers.send(box.office, box.office_password, zipped, [box.address])
    result = box.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    names = {name: outcome for name, outcome, _, _ in returns(box.data)}
    assert names["宿管-已办.xlsx"] == "merged" and names["宿管-第二份.xlsx"] == "merged"
    [reply] = _replies(box, raw_id)
    assert "宿管-已办.xlsx：已合并" in _body(reply)
    assert any("宿管-已办" in name and name.endswith("回执.xlsx") for name in attachments(reply))
    [reply] = _replies(box, rfc_id)
    assert "宿管-第二份.xlsx：已合并" in _body(reply)
    [reply] = _replies(box, zip_id)
    text = _body(reply)
    assert "压缩包" in text and "宿管.zip" in text and ".xlsx 工作簿作为附件" in text and "没有离校工作簿" not in text
    _verified(box)


def _raw_mail(mailbox: Mailbox, message_id: str, filename: bytes, data: bytes) -> bytes:
    """A mail as an old client writes it: the attachment's name parameter as given (raw GBK bytes allowed)."""
    return (f"From: {mailbox.office}\r\nTo: {mailbox.address}\r\nSubject: Re: dorm\r\nMessage-ID: {message_id}\r\n"
            f"Date: {email.utils.formatdate(localtime=True)}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nok\r\n--XX\r\n").encode() + (
        b"Content-Type: " + "/".join(XLSX).encode() + b"\r\nContent-Disposition: attachment; " + filename
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data).replace(b"\n", b"\r\n")
        + b"--XX--\r\n")
