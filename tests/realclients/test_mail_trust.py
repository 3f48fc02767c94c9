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
    assert box.office_mail() == []  # nothing was sent to the offices before: any mail there would be the reply


def _directory(mailbox: Mailbox, dorm: str, utilities: str) -> None:
    path = mailbox.data.parent / "通讯录-新.csv"
    path.write_text(f"离校点,联系人,电子邮箱\n宿管中心离校点,王老师,{dorm}\n水电通信中心离校点,李老师,{utilities}\n",
                    "utf-8")
    result = mailbox.cli("offices", "import", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _review(mailbox: Mailbox) -> list[dict[str, str]]:
    import json

    result = mailbox.cli("review", "list", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    items: list[dict[str, str]] = json.loads(result.stdout)["items"]
    return items


def test_an_office_mailing_another_offices_workbook_is_held_for_review(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """水电's address mails a ticked 宿管 workbook: held (nothing merged), listed by lixiao review as a file waiting
    for confirmation; `review resolve … take` merges it (audited), and verify passes."""
    _directory(box, box.office, box.stranger)
    data = edit(workbook(box.data, "dorm"), {(ROSTER[0].student_no, "清理宿舍物品"): True})
    message = _message(box, "Re: 宿管中心离校点", "代交")
    message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename="宿管.xlsx")
    box.servers.send(box.stranger, box.stranger_password, message, [box.address])
    _fetch(box)
    assert [(r[0], r[1]) for r in returns(box.data)] == [("宿管.xlsx", "held")]
    [item] = [i for i in _review(box) if i["kind"] == "held"]
    assert item["id"].startswith("H")
    assert "水电通信中心离校点" in item["summary"] and "宿管中心离校点" in item["summary"]
    done = box.cli("review", "resolve", item["id"], "take", "--reason", "已电话确认是水电李老师代交")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "已合并" in done.stdout
    assert [(r[0], r[1]) for r in returns(box.data)] == [("宿管.xlsx", "merged")]
    assert [i for i in _review(box) if i["kind"] == "held"] == []
    assert box.cli("verify").returncode == 0


def test_an_unknown_sender_is_merged_and_listed_for_review(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """Under the default [mail] unknown_sender = "flag" a stranger's return is merged and listed by lixiao review
    until the coordinator dismisses it."""
    data = edit(workbook(box.data, "dorm"), {(ROSTER[2].student_no, "清理宿舍物品"): True})
    message = _message(box, "交回", "代交")
    message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename="代交.xlsx")
    box.servers.send(box.stranger, box.stranger_password, message, [box.address])
    _fetch(box)
    assert [(r[0], r[1]) for r in returns(box.data)] == [("代交.xlsx", "merged")]
    [item] = [i for i in _review(box) if i["kind"] == "sender"]
    assert box.stranger in item["summary"] and "不在离校点通讯录中" in item["summary"]
    done = box.cli("review", "resolve", item["id"], "dismiss", "--reason", "已核实")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [i for i in _review(box) if i["kind"] == "sender"] == []


def test_require_authentication_reads_only_the_schools_own_verdict(box: Mailbox) -> None:  # noqa: F811 - the fixture
    """With [mail] require_authentication and auth_server: a return without the server's verdict, or with a
    verdict written under another server's name, is held; one the school's server passed is merged and its
    verdict is in the ledger."""
    text = (box.data / "lixiao.toml").read_text("utf-8").replace(
        "poll = 1\n", 'poll = 1\nrequire_authentication = true\nauth_server = "mx.lixiao.test"\n')
    (box.data / "lixiao.toml").write_text(text, "utf-8")
    cases = [("无验证.xlsx", None), ("冒名.xlsx", "evil.example; dmarc=pass header.from=lixiao.test"),
             ("通过.xlsx", "mx.lixiao.test; spf=pass smtp.mailfrom=lixiao.test; dmarc=pass header.from=lixiao.test")]
    for n, (name, verdict) in enumerate(cases):
        data = edit(workbook(box.data, "dorm"), {(ROSTER[n].student_no, "清理宿舍物品"): True})
        message = _message(box, "交回", "交回")
        message.replace_header("From", box.office)
        if verdict:
            message["Authentication-Results"] = verdict
        message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=name)
        box.servers.send(box.office, box.office_password, message, [box.address])
    _fetch(box)
    assert sorted((r[0], r[1]) for r in returns(box.data)) == [("冒名.xlsx", "held"), ("无验证.xlsx", "held"),
                                                               ("通过.xlsx", "merged")]
    import sqlite3

    with sqlite3.connect(box.data / "store.db") as conn:
        [(detail,)] = conn.execute("SELECT detail FROM returns WHERE file_name = '通过.xlsx'").fetchall()
    assert "发件人验证：通过（spf=pass dmarc=pass；mx.lixiao.test）" in detail
