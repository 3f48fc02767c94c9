"""The e-mail channel: workbooks out over SMTP, returns in from an IMAP mailbox, receipts back as replies.

Exactly once: every spreadsheet attachment goes through the same pipeline as an inbox file (the ledger keys it by
content hash, so an attachment sent twice is a duplicate); a message is remembered by its Message-ID together
with its attachments' hashes (``IncomingMail.key``: a reused Message-ID with other workbooks is another message)
in the store (``mail_messages``) once all its attachments are decided and its reply is sent, and only then flagged
``$LixiaoDone`` on the server. A crash or a dropped connection before that leaves the message unflagged: the
next fetch takes it again, its attachments are duplicates, and its reply is sent (a reply may thus go twice,
a tick is never applied twice).
"""

from __future__ import annotations

import imaplib
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

from lixiao.core.manual.identity import mask_ids_in_text
from lixiao.core.storage.ledger import Channel, Origin
from lixiao.core.storage.offices import Office
from lixiao.sync.datafolder import DataFolder
from lixiao.sync.messages import OUTCOME_LABELS, strip_code
from lixiao.sync.takeback.inbox import SyncSettings, sync_settings
from lixiao.sync.takeback.outcomes import FileOutcome, Outcome
from lixiao.sync.takeback.receipts import receipt_path

from .mailmsg import LATEST_WORD, XLSX_TYPE, IncomingMail, read_message, reply_message
from .settings import MailSettings

DONE_KEYWORD = "$LixiaoDone"
MAX_MESSAGE_MB = 60.0  # a larger message is not fetched whole: it is answered and flagged
log = logging.getLogger("lixiao.watch")


class MailError(RuntimeError):
    """A mail server could not be reached, refused the login, or dropped the connection (Chinese message)."""


# -- connections --------------------------------------------------------------------------------------------
def _context(mail: MailSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=mail.ca_file or None)
    return context


def _what(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "连接超时"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS 证书或加密协商失败（{exc}）；检查端口与加密方式（ssl/starttls）是否对应，或设置 [mail] ca_file"
    if isinstance(exc, ConnectionRefusedError):
        return "连接被拒绝（服务器没有在这个端口监听）"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


@contextmanager
def smtp_session(mail: MailSettings) -> Iterator[smtplib.SMTP]:
    """A logged-in SMTP connection (SSL, STARTTLS or plain as configured)."""
    where = f"SMTP 服务器 {mail.smtp_host}:{mail.smtp_port}"
    password = mail.password()
    try:
        client: smtplib.SMTP
        if mail.smtp_security == "ssl":
            client = smtplib.SMTP_SSL(mail.smtp_host, mail.smtp_port, timeout=mail.timeout, context=_context(mail))
        else:
            client = smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.timeout)
            if mail.smtp_security == "starttls":
                client.starttls(context=_context(mail))
        client.login(mail.user, password)
    except smtplib.SMTPAuthenticationError:
        raise MailError(f"{where} 拒绝登录：用户名或密码不对（学校邮箱、QQ、163 邮箱要用“授权码”，不是登录密码）"
                        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"无法连接 {where}：{_what(exc)}") from None
    try:
        yield client
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


@contextmanager
def imap_session(mail: MailSettings) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP connection with the configured folder selected."""
    where = f"IMAP 服务器 {mail.imap_host}:{mail.imap_port}"
    password = mail.password()
    try:
        client: imaplib.IMAP4
        if mail.imap_security == "ssl":
            client = imaplib.IMAP4_SSL(mail.imap_host, mail.imap_port, ssl_context=_context(mail),
                                       timeout=mail.timeout)
        else:
            client = imaplib.IMAP4(mail.imap_host, mail.imap_port, timeout=mail.timeout)
            if mail.imap_security == "starttls":
                client.starttls(ssl_context=_context(mail))
    except (imaplib.IMAP4.error, OSError) as exc:
        raise MailError(f"无法连接 {where}：{_what(exc)}") from None
    try:
        try:
            client.login(mail.user, password)
        except imaplib.IMAP4.error:
            raise MailError(f"{where} 拒绝登录：用户名或密码不对（学校邮箱、QQ、163 邮箱要用“授权码”，并在网页版"
                            "设置里开启 IMAP/SMTP 服务）") from None
        typ, _ = client.select(_quote(mail.imap_folder))
        if typ != "OK":
            raise MailError(f"{where} 上没有邮件夹“{mail.imap_folder}”（[mail] imap_folder）")
        yield client
    except (imaplib.IMAP4.abort, OSError) as exc:
        raise MailError(f"与 {where} 的连接中断：{_what(exc)}；下次收取时继续") from None
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- fetching -----------------------------------------------------------------------------------------------
@dataclass
class FetchResult:
    """What one fetch did."""

    messages: int = 0
    duplicates: int = 0
    outcomes: list[FileOutcome] = field(default_factory=list)
    replies: int = 0
    errors: list[str] = field(default_factory=list)


def fetch_mail(folder: DataFolder, mail: MailSettings, key: bytes,
               latest: Callable[[Office, EmailMessage, str], str],
               settings: SyncSettings | None = None, limit: int = 200,
               lock: Callable[[], AbstractContextManager[None]] = nullcontext) -> FetchResult:
    """Take every new message of the mailbox once (see the module docstring). ``latest(office, message, sender)``
    mails an office its current workbooks and says what it sent. ``lock``: the writer lock, taken around each
    attachment and each record only — never across the mail server's answers — so that an interactive command
    waits at most for one workbook (a caller that holds the lock already passes nothing)."""
    settings = settings or sync_settings(folder.root)
    result = FetchResult()
    with imap_session(mail) as client:
        typ, data = client.uid("SEARCH", "UNDELETED", "NOT", "KEYWORD", DONE_KEYWORD)
        if typ != "OK":
            raise MailError(f"IMAP 服务器拒绝搜索新邮件：{data!r}")
        uids = [u.decode() for u in (data[0] or b"").split() if u.isdigit()][:limit]
        for uid in uids:
            raw = _fetch_one(client, uid, settings)
            if raw is None:
                continue
            handled = _handle(folder, mail, key, raw, latest, result, lock)
            if handled is not None:
                reply, record = handled
                state = record[4]
                if reply is not None and not _send(mail, reply, result):
                    state = "unanswered"  # remembered all the same: taking it again would only repeat duplicates
                with lock():
                    folder.store.set_mail_message(*record[:4], state, record[5])
            client.uid("STORE", uid, "+FLAGS", f"({DONE_KEYWORD} \\Seen)")
    return result


def _fetch_one(client: imaplib.IMAP4, uid: str, settings: SyncSettings) -> bytes | None:
    _typ, data = client.uid("FETCH", uid, "(RFC822.SIZE)")
    size_match = re.search(rb"RFC822\.SIZE (\d+)", data[0] if data and isinstance(data[0], bytes) else b"")
    size = int(size_match.group(1)) if size_match else 0
    if size > max(MAX_MESSAGE_MB, settings.max_file_mb * 1.4) * 1024 * 1024:
        log.error("邮件 UID %s 有 %.0f MB，超过上限，未收取；请让发件人只附上离校工作簿", uid, size / 2**20)
        client.uid("STORE", uid, "+FLAGS", f"({DONE_KEYWORD})")
        return None
    _typ, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    for item in data or []:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


_Record = tuple[str, str, str, str, str, str]  # key, sender, subject, sent_at, state, detail


def _handle(folder: DataFolder, mail: MailSettings, key: bytes, raw: bytes,
            latest: Callable[[Office, EmailMessage, str], str], result: FetchResult,
            lock: Callable[[], AbstractContextManager[None]]) -> tuple[EmailMessage | None, _Record] | None:
    """One message: its attachments through the pipeline; the reply to send and what to remember once it is
    sent (None: nothing to do — unreadable, or already taken)."""
    from lixiao.sync.takeback.pipeline import process_bytes

    store = folder.store
    try:
        incoming = read_message(raw, mail.auth_server)
    except Exception as exc:  # noqa: BLE001 - a malformed message must not block the mailbox
        log.error("一封邮件无法解析（%s），已跳过", type(exc).__name__)
        return None
    if store.mail_message_done(incoming.key):
        result.duplicates += 1
        return None
    result.messages += 1
    offices = store.office_by_email(incoming.sender) if incoming.sender else []
    origin = Origin(Channel.MAIL, office=offices[0].key if offices else "", sender=incoming.sender,
                    message_id=incoming.message_id, sent_at=incoming.sent_at, sender_known=bool(offices),
                    offices=tuple(o.key for o in offices), authentication=incoming.authentication)
    body: list[str] = []
    taken: list[FileOutcome] = []
    state = "taken" if incoming.attachments else "answered"
    if len(incoming.attachments) > mail.max_attachments:
        state = "refused"
        body = [f"您好！这封邮件附有 {len(incoming.attachments)} 个工作簿，超过每封 {mail.max_attachments} 个的上限"
                "（lixiao.toml [mail] max_attachments），整封邮件没有处理。",
                "请只附上本离校点的工作簿；确实需要交回多个时，请分几封邮件发送，"
                f"每封不超过 {mail.max_attachments} 个。"]
        log.error("%s 的邮件附有 %d 个工作簿，超过上限 %d，整封未处理", mask_ids_in_text(incoming.sender),
                  len(incoming.attachments), mail.max_attachments)
    elif incoming.attachments:
        body += [f"您好！系统已收到您交回的 {len(incoming.attachments)} 个文件：", ""]
        for name, data in incoming.attachments:
            with lock():
                outcome = process_bytes(folder, name, data, origin, key)
            taken.append(outcome)
            body += _outcome_lines(outcome)
        result.outcomes += taken
        if not offices:
            body += ["", "注意：您的邮箱不在离校工作组的通讯录中，已提醒协调人核对。"]
    elif incoming.wants_latest and offices and _may_answer(folder, mail, incoming):
        with lock():
            sent = [latest(office, incoming.message, incoming.sender) for office in offices]
        return None, (incoming.key, incoming.sender, incoming.subject, incoming.sent_at, "latest", "；".join(sent))
    elif incoming.wants_latest:
        body = ["您好！您的邮箱不在离校工作组的通讯录中，无法确定您是哪个离校点，因此没有发送工作簿。",
                "请联系离校工作组把您的邮箱加入通讯录。"]
    elif incoming.archives:
        packed = "、".join(name for name, _ in incoming.archives[:5])
        body = [f"您好！附件是压缩包（{packed}），系统不会打开压缩包，没有处理任何内容。",
                "请直接把 .xlsx 工作簿作为附件发送，不要压缩：回复系统发给您的邮件，附上勾选、保存后的工作簿。"]
    else:
        body = ["您好！这封邮件里没有离校工作簿（.xlsx 附件），系统没有处理任何内容。",
                "交回工作簿：请回复系统发给您的邮件，并把勾选、保存后的工作簿作为附件。",
                f"需要最新的工作簿：发一封主题为“{LATEST_WORD}”的邮件到本邮箱。"]
    reply = None
    if _may_answer(folder, mail, incoming):
        reply = reply_message(mail, incoming.message, incoming.sender, body)
        for outcome in taken:
            receipt = receipt_path(folder, outcome)
            if receipt is not None:
                reply.add_attachment(receipt.read_bytes(), maintype=XLSX_TYPE[0], subtype=XLSX_TYPE[1],
                                     filename=receipt.name)
    else:
        state = "silent"  # automatic mail, our own, or a sender answered often enough this hour
    detail = "；".join(f"{o.file}:{o.outcome}" for o in taken)
    return reply, (incoming.key, incoming.sender, incoming.subject, incoming.sent_at, state, detail)


def _may_answer(folder: DataFolder, mail: MailSettings, incoming: IncomingMail) -> bool:
    """Whether this message gets an answer: never automatic mail or our own, and at most
    ``replies_per_hour`` answers to one sender in an hour (a loop between two robots is stopped by a limit)."""
    if incoming.automatic or incoming.sender == mail.address.lower():
        return False
    since = (datetime.now().astimezone() - timedelta(hours=1)).isoformat(timespec="seconds")
    if folder.store.replies_since(incoming.sender, since) < mail.replies_per_hour:
        return True
    log.error("一小时内已回复 %s %d 次，本封不再回复（lixiao.toml [mail] replies_per_hour）",
              mask_ids_in_text(incoming.sender), mail.replies_per_hour)
    return False


def _outcome_lines(outcome: FileOutcome) -> list[str]:
    label = OUTCOME_LABELS[outcome.outcome]
    line = f"· {outcome.file}：{label}"
    if outcome.outcome in (Outcome.MERGED, Outcome.HELD):
        line += f"，记录 {outcome.applied} 项，被拒绝 {outcome.refused} 项，冲突待核对 {outcome.conflicts} 项"
    lines = [mask_ids_in_text(line)]
    lines += [f"    {mask_ids_in_text(strip_code(r))}" for r in outcome.reasons[:5]]
    if outcome.outcome in (Outcome.REJECTED, Outcome.QUARANTINED):
        lines.append("    请按上面的原因改正后，重新回复本邮件并附上工作簿。")
    return lines


def _send(mail: MailSettings, message: EmailMessage, result: FetchResult) -> bool:
    try:
        send_messages(mail, [message])
    except MailError as exc:
        result.errors.append(f"回执邮件未能发出：{exc}")
        log.error("回执邮件未能发出：%s", exc)
        return False
    result.replies += 1
    return True


def send_messages(mail: MailSettings, messages: list[EmailMessage]) -> None:
    """Send messages over one SMTP session (MailError when the server cannot be used)."""
    with smtp_session(mail) as client:
        for message in messages:
            try:
                client.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                raise MailError(f"邮件服务器拒收收件人 {', '.join(exc.recipients)}") from None
            except (smtplib.SMTPException, OSError) as exc:
                raise MailError(f"发送失败：{_what(exc)}") from None
