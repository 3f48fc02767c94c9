"""Who sent a return, and mail that answers mail, against real servers (Dovecot IMAP, aiosmtpd SMTP on loopback):
the sender is From only (never Reply-To), robots are never answered, one sender gets at most a few replies an
hour, and a flood of attachments is refused whole with one reply."""

from __future__ import annotations

import email.utils
from email.message import EmailMessage

import pytest

from ..conftest import ROSTER, edit
from .test_mail_channel import XLSX, Mailbox, box, returns, workbook  # noqa: F401 - box: the fixture

pytestmark = pytest.mark.slow  # real servers: run by make test, not by the fast suite


def _stranger_mail(mailbox: Mailbox) -> list[EmailMessage]:
    import email.policy

    out = []
    for raw in mailbox.servers.inbox(mailbox.stranger, mailbox.stranger_password):
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


def _message(mailbox: Mailbox, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = mailbox.stranger, mailbox.address, subject
    message["Message-ID"] = email.utils.make_msgid(domain="lixiao.test")
    message["Date"] = email.utils.formatdate(localtime=True)
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def _fetch(mailbox: Mailbox) -> None:
    result = mailbox.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_out_of_office_robot_without_auto_submitted_is_never_answered(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """A naive responder that marks itself only with X-Autoreply (or X-Autorespond, or an empty Return-Path)
    gets no reply in six rounds; a person's mail in the same rounds is answered."""
    for round_ in range(6):
        header = [{"X_Autoreply": "yes"}, {"X_Autorespond": "休假中"}][round_ % 2]
        box.servers.send(box.stranger, box.stranger_password,
                         _message(box, "自动回复：休假中", "我正在休假，回来后回复您。", **header), [box.address])
        _fetch(box)
    assert _stranger_mail(box) == []
    box.servers.send(box.stranger, box.stranger_password, _message(box, "请问", "怎么交回？"), [box.address])
    _fetch(box)
    assert len(_stranger_mail(box)) == 1


def test_one_sender_gets_at_most_the_hourly_replies(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """Eight mails from one sender in an hour get five replies ([mail] replies_per_hour = 5): a loop with a
    robot that passes every test is stopped by the limit."""
    for n in range(8):
        box.servers.send(box.stranger, box.stranger_password, _message(box, f"第 {n} 封", "你好"), [box.address])
    _fetch(box)
    assert len(_stranger_mail(box)) == 5


def test_a_mail_with_too_many_attachments_is_refused_whole_with_one_reply(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """150 workbooks in one mail (over [mail] max_attachments = 20): nothing is taken (no ledger row), the
    sender gets one reply saying the limit and how to send instead."""
    data = edit(workbook(box.data, "dorm"), {(ROSTER[0].student_no, "清理宿舍物品"): True})
    message = _message(box, "交回", "全部工作簿")
    for n in range(150):
        message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=f"宿管-{n:03d}.xlsx")
    box.servers.send(box.stranger, box.stranger_password, message, [box.address])
    _fetch(box)
    assert returns(box.data) == []
    [reply] = _stranger_mail(box)
    body = reply.get_body(("plain",))
    assert body is not None
    text = str(body.get_content())
    assert "150 个工作簿" in text and "20 个" in text and "分几封" in text


def test_the_sender_is_from_never_reply_to(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """From: a stranger with Reply-To: the dorm office: the ledger names the stranger (unknown sender), and the
    reply with its receipt goes to From — the office named in Reply-To receives nothing."""
    data = edit(workbook(box.data, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
    message = _message(box, "Re: 宿管中心离校点", "交回", Reply_To=box.office)
    message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename="宿管.xlsx")
    box.servers.send(box.stranger, box.stranger_password, message, [box.address])
    _fetch(box)
    [(name, _outcome, channel, sender)] = returns(box.data)
    assert (name, channel, sender) == ("宿管.xlsx", "mail", box.stranger)
    assert len(_stranger_mail(box)) == 1
    assert box.office_mail() == [] or all("宿管.xlsx" not in str(m.get_body(("plain",))) for m in box.office_mail())
