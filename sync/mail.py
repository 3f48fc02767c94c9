"""The e-mail channel: workbooks out over SMTP, returns in from an IMAP mailbox, receipts back as replies.

Exactly once: every spreadsheet attachment goes through the same pipeline as an inbox file (the ledger keys it by
content hash, so an attachment sent twice is a duplicate); a message is remembered by its Message-ID in the
store (``mail_messages``) once all its attachments are decided and its reply is sent, and only then flagged
``$LixiaoDone`` on the server. A crash or a dropped connection before that leaves the message unflagged: the
next fetch takes it again, its attachments are duplicates, and its reply is sent (a reply may thus go twice,
a tick is never applied twice).
"""

from __future__ import annotations

import email.policy
import hashlib
import imaplib
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid, parsedate_to_datetime
from pathlib import Path

from lixiao.core.identity import mask_ids_in_text
from lixiao.core.ledger import Channel, Origin
from lixiao.core.offices import Office

from .datafolder import DataFolder
from .inbox import SyncSettings, safe_name, sync_settings
from .livesettings import MailSettings
from .messages import OUTCOME_LABELS, strip_code
from .outcomes import FileOutcome, Outcome

DONE_KEYWORD = "$LixiaoDone"
XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".et", ".ods", ".csv")
LATEST_WORD = "最新"
MAX_MESSAGE_MB = 60.0  # a larger message is not fetched whole: it is answered and flagged
log = logging.getLogger("lixiao.watch")
# Lines up to 998 characters (RFC 5322): a Chinese attachment name stays ONE RFC 2231 parameter
# (filename*=utf-8''…) instead of continuations (filename*0*=…; filename*1*=…), which some clients mishandle.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


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


# -- composing ----------------------------------------------------------------------------------------------
def _sender(mail: MailSettings) -> Address:
    user, _, domain = mail.address.partition("@")
    return Address(mail.from_name, user, domain)


def _add_xlsx(message: EmailMessage, name: str, data: bytes) -> None:
    """Attach a workbook; the Chinese name as RFC 2231 (filename*=utf-8''…) in Content-Disposition and as the
    Content-Type name parameter, which Outlook, Foxmail, Coremail, QQ and 163 mail read."""
    message.add_attachment(data, maintype=XLSX_TYPE[0], subtype=XLSX_TYPE[1], filename=name)
    part = list(message.iter_attachments())[-1]
    part.set_param("name", name, header="Content-Type")


def workbook_message(mail: MailSettings, office: Office, to: list[str], session: str,
                     workbooks: list[tuple[str, bytes]], deadline: str, certificate_desk: bool,
                     reply_to: EmailMessage | None = None) -> EmailMessage:
    """The mail that brings an office its current workbook(s)."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = _sender(mail)
    message["To"] = ", ".join(to)
    first = workbooks[0][0] if workbooks else ""
    generation = re.search(r"第(\d+)版", first)
    version = f"第{generation.group(1)}版" if generation else ""
    message["Subject"] = f"【离校工作簿】{office.title}{version}" + (f"（请于 {deadline} 前交回）" if deadline else "")
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=mail.address.partition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    if reply_to is not None:
        _thread(message, reply_to)
    lines = [
        f"{office.contact or '老师'}，您好：",
        "",
        f"附件是{session}{office.title}的离校工作簿（共 {len(workbooks)} 个文件）：",
        *[f"  · {name}" for name, _ in workbooks],
        "",
        "办理方法：",
        "  1. 用 Excel、WPS 或 LibreOffice 打开附件，在“办理”表中为已办结的学生勾选方框（或填 √）；",
        "     “前置条件”列写明“未满足”的学生，请先不要办理。",
        "  2. 保存文件（保持 .xlsx 格式，不要改文件名，不要删除隐藏的工作表）。",
        "  3. 直接回复本邮件，把保存后的工作簿作为附件发回。系统会自动处理，并回复一份回执。",
    ]
    if certificate_desk:
        lines += ["", "领取证件：工作簿第一张表“可领证名单”列出现在可以领取证件的学生；不在名单中的学生请勿发证。"]
    if deadline:
        lines += ["", f"请于 {deadline} 前交回。"]
    lines += ["", f"需要最新的工作簿时，发一封主题为“{LATEST_WORD}”的邮件到本邮箱即可。", "",
              "（本邮件由 lixiao 离校系统发送）"]
    message.set_content("\n".join(lines), cte="base64")
    for name, data in workbooks:
        _add_xlsx(message, name, data)
    return message


def _thread(message: EmailMessage, original: EmailMessage) -> None:
    """Make ``message`` a reply in ``original``'s thread."""
    original_id = str(original.get("Message-ID", "")).strip()
    if original_id:
        message["In-Reply-To"] = original_id
        references = str(original.get("References", "")).split()
        message["References"] = " ".join([*references[-10:], original_id])


def _reply(mail: MailSettings, original: EmailMessage, to: str, body: list[str]) -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["From"] = _sender(mail)
    message["To"] = to
    subject = _clean_header(str(original.get("Subject", "")))
    message["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject or '交回的离校工作簿'}"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=mail.address.partition("@")[2] or None)
    message["Auto-Submitted"] = "auto-replied"
    _thread(message, original)
    message.set_content("\n".join([*body, "", "（本邮件由 lixiao 离校系统自动回复）"]), cte="base64")
    return message


def _clean_header(text: str) -> str:
    return " ".join(text.split())[:200]


# -- reading a message --------------------------------------------------------------------------------------
@dataclass
class IncomingMail:
    """What lixiao reads of one message."""

    key: str  # Message-ID, or the hash of the whole message when it has none
    sender: str
    subject: str
    sent_at: str
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    automatic: bool = False  # an auto-reply, a bounce or a list: never answered (no mail loops)
    wants_latest: bool = False
    message: EmailMessage = field(default_factory=EmailMessage)


def read_message(raw: bytes) -> IncomingMail:
    """Parse a message: its key, sender, and every spreadsheet attachment — also inside a forwarded message."""
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    message_id = _clean_header(str(message.get("Message-ID", "") or ""))
    key = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    senders = getaddresses([str(message.get("Reply-To") or message.get("From") or "")])
    sender = next((a for _, a in senders if "@" in a), "").strip().lower()
    subject = _clean_header(str(message.get("Subject", "") or ""))
    sent_at = ""
    try:
        date = message.get("Date")
        if date:
            sent_at = parsedate_to_datetime(str(date)).isoformat(timespec="seconds")
    except (TypeError, ValueError, IndexError):
        sent_at = ""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    local = sender.partition("@")[0]
    automatic = (auto not in ("", "no") or precedence in ("bulk", "junk", "list") or bool(message.get("List-Id"))
                 or local in ("mailer-daemon", "postmaster", "noreply", "no-reply") or not sender)
    found = IncomingMail(key, sender, subject, sent_at, automatic=automatic, message=message)
    found.attachments = list(_spreadsheets(message))
    body = _text_of(message)
    found.wants_latest = LATEST_WORD in subject or (not found.attachments and LATEST_WORD in body[:200])
    return found


def _spreadsheets(message: EmailMessage) -> Iterator[tuple[str, bytes]]:
    for part in message.walk():  # walk() descends into message/rfc822 parts: a forwarded mail's attachments too
        if part.is_multipart():
            continue
        name = part.get_filename() or ""
        ctype = part.get_content_type()
        if not (name.lower().endswith(SPREADSHEET_SUFFIXES) or ctype == "/".join(XLSX_TYPE)):
            continue
        try:
            data = part.get_payload(decode=True)
        except (ValueError, TypeError):
            data = None
        if isinstance(data, bytes):
            yield safe_name(name or "附件.xlsx"), data


def _text_of(message: EmailMessage) -> str:
    try:
        body = message.get_body(preferencelist=("plain",))
        return str(body.get_content()) if body is not None else ""
    except (KeyError, LookupError, ValueError):
        return ""


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
               settings: SyncSettings | None = None, limit: int = 200) -> FetchResult:
    """Take every new message of the mailbox once (see the module docstring); the caller holds the writer lock.
    ``latest(office, message, sender)`` mails an office its current workbooks and says what it sent."""
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
            handled = _handle(folder, mail, key, raw, latest, result)
            if handled is not None:
                reply, record = handled
                state = record[4]
                if reply is not None and not _send(mail, reply, result):
                    state = "unanswered"  # remembered all the same: taking it again would only repeat duplicates
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
            latest: Callable[[Office, EmailMessage, str], str],
            result: FetchResult) -> tuple[EmailMessage | None, _Record] | None:
    """One message: its attachments through the pipeline; the reply to send and what to remember once it is
    sent (None: nothing to do — unreadable, or already taken)."""
    from .pipeline import process_bytes

    store = folder.store
    try:
        incoming = read_message(raw)
    except Exception as exc:  # noqa: BLE001 - a malformed message must not block the mailbox
        log.error("一封邮件无法解析（%s），已跳过", type(exc).__name__)
        return None
    if store.mail_message_done(incoming.key):
        result.duplicates += 1
        return None
    result.messages += 1
    offices = store.office_by_email(incoming.sender) if incoming.sender else []
    origin = Origin(Channel.MAIL, office=offices[0].key if offices else "", sender=incoming.sender,
                    message_id=incoming.key, sent_at=incoming.sent_at, sender_known=bool(offices))
    body: list[str] = []
    if incoming.attachments:
        body += [f"您好！系统已收到您交回的 {len(incoming.attachments)} 个文件：", ""]
        for name, data in incoming.attachments:
            outcome = process_bytes(folder, name, data, origin, key)
            result.outcomes.append(outcome)
            body += _outcome_lines(outcome)
        if not offices:
            body += ["", "注意：您的邮箱不在离校工作组的通讯录中，已提醒协调人核对。"]
    elif incoming.wants_latest and offices:
        sent = [latest(office, incoming.message, incoming.sender) for office in offices]
        return None, (incoming.key, incoming.sender, incoming.subject, incoming.sent_at, "latest", "；".join(sent))
    elif incoming.wants_latest:
        body = ["您好！您的邮箱不在离校工作组的通讯录中，无法确定您是哪个离校点，因此没有发送工作簿。",
                "请联系离校工作组把您的邮箱加入通讯录。"]
    else:
        body = ["您好！这封邮件里没有离校工作簿（.xlsx 附件），系统没有处理任何内容。",
                "交回工作簿：请回复系统发给您的邮件，并把勾选、保存后的工作簿作为附件。",
                f"需要最新的工作簿：发一封主题为“{LATEST_WORD}”的邮件到本邮箱。"]
    reply = None
    if not incoming.automatic and incoming.sender != mail.address.lower():
        reply = _reply(mail, incoming.message, incoming.sender, body)
        for outcome in result.outcomes[-len(incoming.attachments):] if incoming.attachments else []:
            receipt = _receipt_of(folder, outcome)
            if receipt is not None:
                reply.add_attachment(receipt.read_bytes(), maintype=XLSX_TYPE[0], subtype=XLSX_TYPE[1],
                                     filename=receipt.name)
    state = "taken" if incoming.attachments else "answered"
    detail = "；".join(f"{o.file}:{o.outcome}" for o in result.outcomes[-len(incoming.attachments):]) \
        if incoming.attachments else ""
    return reply, (incoming.key, incoming.sender, incoming.subject, incoming.sent_at, state, detail)


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


def _receipt_of(folder: DataFolder, outcome: FileOutcome) -> Path | None:
    relative = outcome.receipt
    if not relative and outcome.hash:
        row = folder.store.ledger(outcome.hash)
        relative = row.details.receipt if row is not None else ""
    path = folder.root / relative if relative else None
    return path if path is not None and path.is_file() else None


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
