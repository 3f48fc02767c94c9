"""The e-mail channel against real servers (Dovecot IMAP, aiosmtpd SMTP on loopback): send, fetch, receipts as
replies, duplicates, forwards, hostile attachments, a server restart, kill -9, a wrong password."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from lixiao.sync.cli.main import main

from ..conftest import ROSTER, edit
from ..hostile_corpus import BILLION_LAUGHS, dtd
from .mailservers import MailServers

pytestmark = pytest.mark.slow  # real servers: run by make test, not by the fast suite

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
PASSWORD_ENV = "LIXIAO_TEST_MAIL_PASSWORD"


class Mailbox:
    """A data folder wired to a coordinator mailbox, and one office (宿管中心) with its own address."""

    def __init__(self, data: Path, servers: MailServers, coordinator: tuple[str, str], office: tuple[str, str],
                 other: tuple[str, str]) -> None:
        self.data, self.servers = data, servers
        self.address, self.password = coordinator
        self.office, self.office_password = office
        self.stranger, self.stranger_password = other

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`lixiao --data DATA ARGS…` as its own process (the mail password in its environment)."""
        return subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(self.data), *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, PASSWORD_ENV: self.password})

    def office_mail(self) -> list[EmailMessage]:
        """Every message in the office's INBOX, parsed."""
        return [_parse(raw) for raw in self.servers.inbox(self.office, self.office_password)]

    def send_return(self, attachments: list[tuple[str, bytes]], subject: str = "Re: 宿管中心离校点",
                    sender: str = "", message_id: str = "") -> EmailMessage:
        """The office (or ``sender``) mails attachments to the coordinator."""
        sender = sender or self.office
        password = self.office_password if sender == self.office else self.stranger_password
        message = EmailMessage()
        message["From"] = sender
        message["To"] = self.address
        message["Subject"] = subject
        message["Message-ID"] = message_id or email.utils.make_msgid(domain="lixiao.test")
        message["Date"] = email.utils.formatdate(localtime=True)
        message.set_content("交回工作簿，请查收。")
        for name, data in attachments:
            message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=name)
        self.servers.send(sender, password, message, [self.address])
        return message


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def attachments(message: EmailMessage) -> dict[str, bytes]:
    """Attachment name → bytes."""
    found = {}
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found[str(part.get_filename())] = payload
    return found


def passed(data: Path) -> set[tuple[str, str]]:
    """Cells stored as passed."""
    with sqlite3.connect(data / "store.db") as conn:
        return set(conn.execute("SELECT student_no, step FROM statuses WHERE status = 'passed'"))


def returns(data: Path) -> list[tuple[str, str, str, str]]:
    """(file name, outcome, channel, sender) of every ledger row."""
    with sqlite3.connect(data / "store.db") as conn:
        return list(conn.execute("SELECT file_name, coalesce(outcome, ''), channel, sender FROM returns "
                                 "ORDER BY received_at"))


def workbook(data: Path, checkpoint: str) -> Path:
    """The newest issued workbook of a checkpoint."""
    return sorted((data / "outbox" / checkpoint).glob("*.xlsx"))[-1]


_counter = iter(range(10_000))


@pytest.fixture
def box(tmp_path: Path, roster_file: Path, mail_servers: MailServers, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[Mailbox]:
    """A five-student folder, workbooks issued, [mail] pointing at the real servers, the dorm office in the
    directory."""
    n = next(_counter)
    coordinator = (mail_servers.add_user(f"lixiao{n}", f"coord-{n}"), f"coord-{n}")
    office = (mail_servers.add_user(f"dorm{n}", f"dorm-{n}"), f"dorm-{n}")
    other = (mail_servers.add_user(f"stranger{n}", f"x-{n}"), f"x-{n}")
    runner = CliRunner()
    data = tmp_path / "data"
    assert runner.invoke(main, ["init", str(data)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "students", "import", str(roster_file)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "issue"]).exit_code == 0
    with (data / "lixiao.toml").open("a", encoding="utf-8") as handle:
        handle.write(f"""
[mail]
address = "{coordinator[0]}"
smtp_host = "{mail_servers.host}"
smtp_port = {mail_servers.smtp_port}
smtp_security = "starttls"
imap_host = "{mail_servers.host}"
imap_port = {mail_servers.imaps_port}
imap_security = "ssl"
ca_file = "{mail_servers.ca_file}"
password_env = "{PASSWORD_ENV}"
poll = 1
""")
    directory = tmp_path / "通讯录.csv"
    directory.write_text(f"离校点,联系人,电子邮箱\n宿管中心离校点,王老师,{office[0].upper()}\n"
                         f"水电通信中心离校点,李老师,{office[0]}\n", "utf-8")
    result = runner.invoke(main, ["--data", str(data), "offices", "import", str(directory)])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv(PASSWORD_ENV, coordinator[1])
    yield Mailbox(data, mail_servers, coordinator, office, other)


def test_send_mails_each_office_its_workbook_with_the_chinese_name(box: Mailbox) -> None:
    """`lixiao send` mails the dorm office its workbooks; names and bytes round-trip; a second send sends nothing."""
    result = box.cli("send", "--checkpoint", "dorm", "--json")
    assert result.returncode == 0, result.stderr
    messages = box.office_mail()
    assert len(messages) == 1
    got = attachments(messages[0])
    issued = workbook(box.data, "dorm")
    assert got == {issued.name: issued.read_bytes()}
    assert "宿管中心离校点" in str(messages[0]["Subject"])
    raw = box.servers.inbox(box.office, box.office_password)[0].decode("ascii")  # as the server holds it
    assert "filename*=utf-8''" in raw and "filename*0" not in raw  # RFC 2231, one parameter
    assert "直接回复本邮件" in messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    again = box.cli("send", "--checkpoint", "dorm")
    assert again.returncode == 0 and "已发送过" in again.stdout
    assert len(box.office_mail()) == 1


def test_a_return_by_mail_merges_once_and_the_receipt_comes_back_in_the_thread(box: Mailbox) -> None:
    """The office replies with its ticked workbook: merged, recorded with sender and Message-ID, flagged on the
    server, and a receipt reply with In-Reply-To arrives; the same message delivered twice is taken once."""
    ticked = edit(workbook(box.data, "dorm"), {(ROSTER[0].student_no, "清理宿舍物品"): True})
    sent = box.send_return([("宿管中心离校点-第1版.xlsx", ticked)])
    box.servers.send(box.office, box.office_password, sent.as_bytes(policy=email.policy.SMTP), [box.address])  # twice
    result = box.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(box.data) == {(ROSTER[0].student_no, "dorm_items")}
    assert returns(box.data) == [("宿管中心离校点-第1版.xlsx", "merged", "mail", box.office)]
    replies = [m for m in box.office_mail() if str(m["In-Reply-To"]) == str(sent["Message-ID"])]
    assert len(replies) == 1
    reply = replies[0]
    assert str(reply["Auto-Submitted"]) == "auto-replied"
    body = reply.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "已合并" in body and "记录 1 项" in body
    assert any(name.endswith("回执.xlsx") for name in attachments(reply))
    assert all(DONE in flags for flags in box.servers.flags(box.address, box.password))
    with sqlite3.connect(box.data / "store.db") as conn:
        message_id = conn.execute("SELECT message_id FROM returns").fetchone()[0]
    assert message_id == str(sent["Message-ID"])
    again = box.cli("fetch", "--json")
    assert again.returncode == 0 and '"messages": 0' in again.stdout
    assert len([m for m in box.office_mail() if m["In-Reply-To"]]) == 1


DONE = "$LixiaoDone"


def test_two_attachments_a_forward_and_a_hostile_file(box: Mailbox) -> None:
    """Two workbooks in one mail both merge; a forwarded mail's attachment merges; an XML bomb is refused with a
    reply and does not block the mail after it."""
    dorm = edit(workbook(box.data, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
    power = edit(workbook(box.data, "utilities"), {(ROSTER[1].student_no, "清理电费"): True})
    box.send_return([("宿管.xlsx", dorm), ("水电.xlsx", power)])
    bomb = dtd(BILLION_LAUGHS)(workbook(box.data, "dorm").read_bytes())
    box.send_return([("炸弹.xlsx", bomb)])
    inner = EmailMessage()
    inner["From"], inner["To"], inner["Subject"] = box.stranger, box.office, "宿管"
    inner.set_content("转给你")
    late = edit(workbook(box.data, "dorm"), {(ROSTER[2].student_no, "清理宿舍物品"): True})
    inner.add_attachment(late, maintype=XLSX[0], subtype=XLSX[1], filename="宿管-转发.xlsx")
    forward = EmailMessage()
    forward["From"], forward["To"], forward["Subject"] = box.office, box.address, "Fwd: 宿管"
    forward["Message-ID"] = email.utils.make_msgid(domain="lixiao.test")
    forward.set_content("转发")
    forward.add_attachment(inner)  # message/rfc822
    box.servers.send(box.office, box.office_password, forward, [box.address])
    result = box.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = {name: outcome for name, outcome, _, _ in returns(box.data)}
    assert outcomes == {"宿管.xlsx": "merged", "水电.xlsx": "merged", "炸弹.xlsx": "rejected",
                        "宿管-转发.xlsx": "merged"}
    assert passed(box.data) == {(ROSTER[1].student_no, "dorm_items"), (ROSTER[1].student_no, "electricity"),
                                (ROSTER[2].student_no, "dorm_items")}
    bodies = [m.get_body(("plain",)).get_content() for m in box.office_mail()]  # type: ignore[union-attr]
    assert any("炸弹.xlsx：已拒绝" in b and "改正" in b for b in bodies)


def test_no_workbook_gets_an_auto_reply_and_zuixin_gets_the_latest(box: Mailbox) -> None:
    """A mail without a workbook gets a short Chinese auto-reply; subject 最新 from the office brings its
    current workbooks back; a stranger asking for 最新 is told why not; an auto-reply is never answered."""
    box.send_return([], subject="请问怎么交回")
    box.send_return([], subject="最新")
    box.send_return([], subject="最新", sender=box.stranger)
    auto = EmailMessage()
    auto["From"], auto["To"], auto["Subject"], auto["Auto-Submitted"] = box.office, box.address, "外出", "auto-replied"
    auto.set_content("我在休假")
    box.servers.send(box.office, box.office_password, auto, [box.address])
    result = box.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    office = box.office_mail()
    texts = [m.get_body(("plain",)).get_content() for m in office]  # type: ignore[union-attr]
    assert sum("没有离校工作簿" in t for t in texts) == 1
    latest = [m for m in office if attachments(m)]
    names = {n for m in latest for n in attachments(m)}
    assert workbook(box.data, "dorm").name in names and workbook(box.data, "utilities").name in names
    assert len(office) == 3  # the help reply and one mail per office of that address; nothing for the auto-reply
    stranger = [_parse(r) for r in box.servers.inbox(box.stranger, box.stranger_password)]
    assert len(stranger) == 1 and "不在" in stranger[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_wrong_password_is_one_clear_line(box: Mailbox) -> None:
    """A wrong password: exit 2, a Chinese line naming 授权码, no traceback, the password never printed."""
    result = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(box.data), "fetch"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, PASSWORD_ENV: "wrong-password-123"})
    assert result.returncode == 2
    assert "拒绝登录" in result.stderr and "授权码" in result.stderr
    assert "Traceback" not in result.stderr and "wrong-password-123" not in result.stderr + result.stdout


def test_imap_restarted_mid_fetch_loses_nothing_and_applies_nothing_twice(box: Mailbox,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot stops after the first message is taken (before it is flagged): the fetch fails with a clear
    error; after the restart the next fetch takes the rest and the first is not applied again."""
    from lixiao.sync.datafolder import open_folder, secret_key
    from lixiao.sync.live import mail as mail_module
    from lixiao.sync.live.settings import mail_settings

    first = edit(workbook(box.data, "dorm"), {(ROSTER[0].student_no, "清理宿舍物品"): True})
    second = edit(workbook(box.data, "dorm"), {(ROSTER[1].student_no, "清理宿舍物品"): True})
    box.send_return([("一.xlsx", first)])
    box.send_return([("二.xlsx", second)])
    handle = mail_module._handle
    calls = []

    def stop_after_first(*args: object, **kwargs: object) -> object:
        result = handle(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1:
            box.servers.stop_imap()
        return result

    monkeypatch.setattr(mail_module, "_handle", stop_after_first)
    folder = open_folder(box.data)
    settings = mail_settings(box.data)
    assert settings is not None
    try:
        with pytest.raises(mail_module.MailError, match=r"连接中断|无法连接"):
            mail_module.fetch_mail(folder, settings, secret_key(box.data), lambda *a: "")
    finally:
        folder.close()
        box.servers.start_imap()
    monkeypatch.setattr(mail_module, "_handle", handle)
    result = box.cli("fetch", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(box.data) == {(ROSTER[0].student_no, "dorm_items"), (ROSTER[1].student_no, "dorm_items")}
    assert sorted(o for _, o, _, _ in returns(box.data)) == ["merged", "merged"]
    with sqlite3.connect(box.data / "store.db") as conn:
        writes = conn.execute("SELECT count(*) FROM audit WHERE kind = 'status'").fetchone()[0]
    assert writes == 2
    assert box.cli("verify").returncode == 0


def test_watch_killed_between_fetch_and_commit_takes_the_mail_once_after_restart(box: Mailbox) -> None:
    """`lixiao watch` is killed (SIGKILL) inside the merge of a mailed return; restarted, it merges it exactly once,
    replies once, and the folder channel (inbox/) kept working with a wrong mail password."""
    ticked = edit(workbook(box.data, "dorm"), {(ROSTER[0].student_no, "清理宿舍物品"): True})
    digest = hashlib.sha256(ticked).hexdigest()
    box.send_return([("宿管.xlsx", ticked)])
    env = {**os.environ, PASSWORD_ENV: box.password, "LIXIAO_FAULT": "merge:kill"}
    command = [sys.executable, "-m", "lixiao.sync.cli", "--data", str(box.data), "watch", "--settle", "0.3"]
    killed = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert passed(box.data) == set()
    env.pop("LIXIAO_FAULT")
    daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(m["In-Reply-To"] for m in box.office_mail()):
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert passed(box.data) == {(ROSTER[0].student_no, "dorm_items")}
    with sqlite3.connect(box.data / "store.db") as conn:
        merges = conn.execute("SELECT count(*) FROM audit WHERE kind = 'return' AND decision = 'merged' "
                              "AND source_hash = ?", [digest]).fetchone()[0]
    assert merges == 1
    assert len([m for m in box.office_mail() if m["In-Reply-To"]]) == 1
    assert box.cli("verify").returncode == 0
    # wrong password: the daemon logs it and still takes inbox/ files
    env[PASSWORD_ENV] = "wrong"
    power = edit(workbook(box.data, "utilities"), {(ROSTER[0].student_no, "清理电费"): True})
    daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (box.data / "inbox" / "水电.xlsx").write_bytes(power)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (ROSTER[0].student_no, "electricity") not in passed(box.data):
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert (ROSTER[0].student_no, "electricity") in passed(box.data)
    log = (box.data / "watch.log").read_text("utf-8")
    assert "拒绝登录" in log and log.count("拒绝登录") == 1  # said once, not every poll
