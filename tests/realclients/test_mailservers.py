"""The mail-server fixture talks real SMTP and IMAP: attachments round-trip, bad logins fail, flags persist."""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import uuid
from email.message import EmailMessage

import pytest

from .mailservers import MailServers

pytestmark = pytest.mark.slow  # real servers: run by make test, not by the fast suite

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILENAME = "机电工程学院离校点-第1版.xlsx"


def _workbook_mail(sender: str, to: str) -> tuple[EmailMessage, bytes]:
    """A message with a Chinese-named .xlsx attachment, and the attachment's bytes."""
    data = b"PK\x03\x04" + bytes(range(256)) * 40 + b"\r\n.\r\n\x00end"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, "离校点 第1版"
    msg.set_content("见附件。\n.\n")
    msg.add_attachment(data, maintype="application", subtype=XLSX.split("/")[1], filename=FILENAME)
    msg.set_boundary("lixiao-test-boundary")  # fixed, so the bytes sent can be compared with the bytes read
    return msg, data


def _attachment(raw: bytes) -> tuple[str | None, bytes]:
    """Filename and decoded bytes of the one attachment in a raw message."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    (part,) = list(parsed.iter_attachments())
    assert part.get_content_type() == XLSX
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return part.get_filename(), payload


def _first_message(imap: imaplib.IMAP4) -> bytes:
    """Raw bytes of INBOX message 1, read without setting \\Seen."""
    imap.select("INBOX", readonly=True)
    typ, resp = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and isinstance(resp[0], tuple), resp
    return resp[0][1]


def test_xlsx_attachment_round_trips_over_smtp_and_imap(mail_servers: MailServers) -> None:
    """Sent via SMTP+STARTTLS, read back over IMAPS and IMAP+STARTTLS, byte for byte."""
    tag = uuid.uuid4().hex[:8]
    a, pa = mail_servers.add_user(f"office-a-{tag}", "secret-a"), "secret-a"
    b, pb = mail_servers.add_user(f"office-b-{tag}", "secret-b"), "secret-b"
    msg, data = _workbook_mail(a, b)
    mail_servers.send(a, pa, msg, [b])

    ctx = mail_servers.client_context()
    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.imaps_port, ssl_context=ctx) as imap:
        imap.login(b, pb)
        via_imaps = _first_message(imap)
    with imaplib.IMAP4(mail_servers.host, mail_servers.imap_port) as imap:
        imap.starttls(ssl_context=ctx)
        imap.login(b, pb)
        via_starttls = _first_message(imap)

    assert via_imaps == via_starttls
    assert _attachment(via_imaps) == (FILENAME, data)
    assert via_imaps == msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))  # dovecot-lda adds no header
    assert mail_servers.flags(b, pb)[0] <= {"\\Recent"}  # BODY.PEEK[] set no \Seen

    with smtplib.SMTP_SSL(mail_servers.host, mail_servers.smtps_port, context=ctx) as smtps:
        smtps.login(a, pa)
        smtps.send_message(msg, from_addr=a, to_addrs=[b])
    inbox = mail_servers.inbox(b, pb)
    assert len(inbox) == 2
    assert _attachment(inbox[1]) == (FILENAME, data)


def test_wrong_password_and_unknown_recipient_are_refused(
        mail_servers: MailServers, mail_user: tuple[str, str]) -> None:
    """Bad logins fail on both servers; unknown recipients get 550; a user added later logs in at once."""
    address, password = mail_user
    with imaplib.IMAP4(mail_servers.host, mail_servers.imap_port) as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login(address, password + "x")
    with smtplib.SMTP(mail_servers.host, mail_servers.smtp_port) as smtp:
        smtp.starttls(context=mail_servers.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(address, password + "x")
        smtp.login(address, password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail(address, ["nobody@lixiao.test"], b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.recipients["nobody@lixiao.test"][0] == 550

    late = f"late-{uuid.uuid4().hex[:8]}@lixiao.test"
    with imaplib.IMAP4(mail_servers.host, mail_servers.imap_port) as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login(late, "late-pw")
    assert mail_servers.add_user(late, "late-pw") == late
    assert mail_servers.inbox(late, "late-pw") == []


def test_restart_keeps_mail_and_keywords(mail_servers: MailServers, mail_user: tuple[str, str]) -> None:
    """A $LixiaoDone keyword stored before restart_imap() is still there after it, with the mail."""
    address, password = mail_user
    raw = b"Subject: keep\r\n\r\nkeep me\r\n.\r\n..\r\nend\r\n"  # dot lines: SMTP dot-stuffing undone exactly
    mail_servers.send(address, password, raw, [address])
    before = mail_servers.inbox(address, password)
    assert before == [raw]

    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.imaps_port,
                           ssl_context=mail_servers.client_context()) as imap:
        imap.login(address, password)
        imap.select("INBOX")
        _, permanent = imap.response("PERMANENTFLAGS")
        assert permanent and b"\\*" in permanent[0]
        typ, _ = imap.store("1", "+FLAGS", "($LixiaoDone)")
        assert typ == "OK"

    mail_servers.restart_imap()
    assert mail_servers.inbox(address, password) == before
    assert "$LixiaoDone" in mail_servers.flags(address, password)[0]
