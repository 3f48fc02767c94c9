"""P7m: the e-mail channel against real servers (Dovecot, aiosmtpd on loopback), against the inbox/ channel and
the bare libraries doing the same I/O.

Usage (root, after `make install`; needs Debian's dovecot-imapd):  .venv/bin/python -m bench.mail [--returns N]

1. Throughput: N returns (one ticked workbook each) mailed to the coordinator's mailbox; one ``fetch_mail``
   takes, merges and answers them all. Compared with (a) the same N files through ``process_file`` from inbox/
   and (b) bare imaplib fetching the N messages plus smtplib sending N replies (no lixiao).
2. Latency: a real ``lixiao watch`` ([mail] poll = 1 s); one return mailed → the receipt reply in the office's
   mailbox; the same kind of return dropped into inbox/ → its receipt in receipts/. Medians of 5.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import imaplib
import io
import json
import logging
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from lixiao.core.feeds.synthetic import make_cohort
from lixiao.sync.cli.main import main
from lixiao.sync.datafolder import open_folder, secret_key
from lixiao.sync.live.mail import fetch_mail
from lixiao.sync.live.settings import mail_settings
from lixiao.sync.takeback.pipeline import process_file
from lixiao.workbooks.roster import build_roster, roster_row
from tests.realclients.mailservers import MailServers, missing_mail_tools, running_mail_servers

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
PASSWORD_ENV = "LIXIAO_BENCH_MAIL_PASSWORD"
RESULTS = Path(__file__).with_name("results")


def _folder(root: Path, count: int, servers: MailServers, coordinator: tuple[str, str], office: str) -> Path:
    runner = CliRunner()
    data = root / "data"
    assert runner.invoke(main, ["init", str(data), "--session", "2026届本科毕业生离校"]).exit_code == 0
    roster = root / "roster.xlsx"
    roster.write_bytes(build_roster([roster_row(s) for s in make_cohort(count).students]))
    assert runner.invoke(main, ["--data", str(data), "students", "import", str(roster)]).exit_code == 0
    assert runner.invoke(main, ["--data", str(data), "issue", "--checkpoint", "dorm"]).exit_code == 0
    with (data / "lixiao.toml").open("a", encoding="utf-8") as handle:
        handle.write(f'\n[mail]\naddress = "{coordinator[0]}"\nsmtp_host = "{servers.host}"\n'
                     f'smtp_port = {servers.smtp_port}\nsmtp_security = "starttls"\nimap_host = "{servers.host}"\n'
                     f'imap_port = {servers.imaps_port}\nimap_security = "ssl"\nca_file = "{servers.ca_file}"\n'
                     f'password_env = "{PASSWORD_ENV}"\npoll = 1\n')
    directory = root / "通讯录.csv"
    directory.write_text(f"离校点,联系人,电子邮箱\n宿管中心离校点,王老师,{office}\n", "utf-8")
    assert runner.invoke(main, ["--data", str(data), "offices", "import", str(directory)]).exit_code == 0
    return data


def _returns(data: Path, n: int) -> list[bytes]:
    """N distinct returns of the dorm workbook, each ticking one more student."""
    source = sorted((data / "outbox" / "dorm").glob("*.xlsx"))[0]
    book = openpyxl.load_workbook(source)
    ws = book["办理"]
    header = next(r for r in range(1, 10) if ws.cell(r, 1).value == "学号")
    column = next(c for c in range(1, ws.max_column + 1) if ws.cell(header, c).value == "清理宿舍物品")
    made = []
    for i in range(n):
        ws.cell(header + 1 + i, column).value = True
        buffer = io.BytesIO()
        book.save(buffer)
        made.append(buffer.getvalue())
    return made


def _mail(sender: str, to: str, name: str, data: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, "Re: 宿管中心离校点"
    message["Message-ID"] = email.utils.make_msgid(domain="lixiao.test")
    message.set_content("交回")
    message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=name)
    return message


def _bare(servers: MailServers, coordinator: tuple[str, str], office: str, n: int) -> float:
    """imaplib fetching every message (BODY.PEEK[]) and storing a flag, smtplib sending n replies: seconds."""
    started = time.perf_counter()
    imap = imaplib.IMAP4_SSL(servers.host, servers.imaps_port, ssl_context=servers.client_context())
    imap.login(*coordinator)
    imap.select("INBOX")
    _, found = imap.uid("SEARCH", "ALL")
    uids = found[0].split()
    bodies = []
    for uid in uids:
        _, data = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        bodies.append(data[0][1])
        imap.uid("STORE", uid.decode(), "+FLAGS", "(\\Seen)")
    imap.logout()
    with smtplib.SMTP(servers.host, servers.smtp_port) as smtp:
        smtp.starttls(context=servers.client_context())
        smtp.login(*coordinator)
        for raw in bodies[:n]:
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            reply = EmailMessage()
            reply["From"], reply["To"], reply["Subject"] = coordinator[0], office, "Re: " + str(parsed["Subject"])
            reply.set_content("回执")
            smtp.send_message(reply)
    return time.perf_counter() - started


def _wait(check: object, timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if check():  # type: ignore[operator]
            return time.perf_counter() - started
        time.sleep(0.05)
    raise TimeoutError("timed out")


def run(n: int, students: int) -> dict[str, object]:
    """Both measurements; the result document."""
    with running_mail_servers() as servers, tempfile.TemporaryDirectory(prefix="lixiao-bench-mail-") as work:
        root = Path(work)
        coordinator = (servers.add_user("coordinator", "c-pw"), "c-pw")
        office = servers.add_user("dorm", "d-pw")
        os.environ[PASSWORD_ENV] = coordinator[1]
        data = _folder(root, students, servers, coordinator, office)
        returns = _returns(data, n + 10)
        pristine = root / "pristine"
        shutil.copytree(data, pristine, symlinks=True)

        # 1a. mail: n returns mailed, one fetch
        for i, payload in enumerate(returns[:n]):
            servers.send(office, "d-pw", _mail(office, coordinator[0], f"宿管-{i}.xlsx", payload), [coordinator[0]])
        folder = open_folder(data)
        settings = mail_settings(data)
        assert settings is not None
        started = time.perf_counter()
        result = fetch_mail(folder, settings, secret_key(data), lambda *a: "")
        mail_seconds = time.perf_counter() - started
        folder.close()
        assert sum(o.outcome == "merged" for o in result.outcomes) == n and result.replies == n, result

        # 1b. the same returns from inbox/
        inbox_data = root / "inbox-run"
        shutil.copytree(pristine, inbox_data, symlinks=True)
        folder = open_folder(inbox_data)
        key = secret_key(inbox_data)
        paths = []
        for i, payload in enumerate(returns[:n]):
            path = inbox_data / "inbox" / f"宿管-{i}.xlsx"
            path.write_bytes(payload)
            paths.append(path)
        started = time.perf_counter()
        outcomes = [process_file(folder, p, key, min_age=0) for p in paths]
        inbox_seconds = time.perf_counter() - started
        folder.close()
        assert all(o.outcome == "merged" for o in outcomes)

        # 1c. the bare libraries: the same n messages fetched again (a second mailbox copy) and n replies sent
        bare_user = (servers.add_user("bare", "b-pw"), "b-pw")
        for i, payload in enumerate(returns[:n]):
            servers.send(office, "d-pw", _mail(office, bare_user[0], f"宿管-{i}.xlsx", payload), [bare_user[0]])
        bare_seconds = _bare(servers, bare_user, office, n)

        # 2. latency through a real daemon
        latency_data = root / "latency"
        shutil.copytree(pristine, latency_data, symlinks=True)
        env = {**os.environ, PASSWORD_ENV: coordinator[1]}
        daemon = subprocess.Popen([sys.executable, "-m", "lixiao.sync.cli", "--data", str(latency_data), "watch",
                                   "--settle", "0.5"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mail_latency, inbox_latency = [], []
        try:
            time.sleep(3)
            replies = len(servers.inbox(office, "d-pw"))
            for i in range(5):
                payload = returns[n + i]
                servers.send(office, "d-pw", _mail(office, coordinator[0], f"延迟-{i}.xlsx", payload),
                             [coordinator[0]])
                sent = time.perf_counter()
                target = replies + 1
                _wait(lambda t=target: len(servers.inbox(office, "d-pw")) >= t)  # type: ignore[misc]
                mail_latency.append(time.perf_counter() - sent)
                replies = target
            for i in range(5):
                before = set((latency_data / "receipts").glob("*.xlsx"))
                (latency_data / "inbox" / f"收件箱-{i}.xlsx").write_bytes(returns[n + 5 + i])
                dropped = time.perf_counter()
                _wait(lambda b=before: set((latency_data / "receipts").glob("*.xlsx")) - b)  # type: ignore[misc]
                inbox_latency.append(time.perf_counter() - dropped)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    return {
        "returns": n, "students": students,
        "mail_fetch_s": round(mail_seconds, 3), "inbox_s": round(inbox_seconds, 3),
        "bare_imap_smtp_s": round(bare_seconds, 3),
        "mail_per_min": round(n / mail_seconds * 60, 1), "inbox_per_min": round(n / inbox_seconds * 60, 1),
        "mail_vs_inbox": round(mail_seconds / inbox_seconds, 2), "mail_vs_bare": round(mail_seconds / bare_seconds, 2),
        "mail_to_reply_s": [round(x, 2) for x in mail_latency],
        "inbox_to_receipt_s": [round(x, 2) for x in inbox_latency],
        "mail_to_reply_median_s": round(statistics.median(mail_latency), 2),
        "inbox_to_receipt_median_s": round(statistics.median(inbox_latency), 2),
    }


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--returns", type=int, default=40)
    parser.add_argument("--students", type=int, default=600)
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own deprecation note on every AUTH
    missing = missing_mail_tools()
    if missing:
        sys.exit(f"bench.mail needs the mail servers: {missing}")
    result = run(args.returns, args.students)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mail.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main_()
