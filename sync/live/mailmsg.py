"""Mail messages: the workbook mail an office gets, the threaded reply it gets back, and what lixiao reads of a
message it receives (sender, Message-ID, every spreadsheet attachment — also inside a forwarded mail)."""

from __future__ import annotations

import email.policy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid, parsedate_to_datetime

from lixiao.core.storage.offices import Office
from lixiao.sync.takeback.inbox import decoded_name, safe_name

from .settings import MailSettings

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".et", ".ods", ".csv")
ARCHIVE_SUFFIXES = (".zip", ".rar", ".7z")  # a workbook sent compressed: answered, never unpacked
LATEST_WORD = "最新"
# Lines up to 998 characters (RFC 5322): a Chinese attachment name stays ONE RFC 2231 parameter
# (filename*=utf-8''…) instead of continuations (filename*0*=…; filename*1*=…), which some clients mishandle.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


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


def reply_message(mail: MailSettings, original: EmailMessage, to: str, body: list[str]) -> EmailMessage:
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

    message_id: str  # Message-ID, or the hash of the whole message when it has none
    sender: str
    subject: str
    sent_at: str
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    archives: list[tuple[str, bytes]] = field(default_factory=list)  # attached .zip/.rar/.7z (never opened)
    automatic: bool = False  # an auto-reply, a bounce or a list: never answered (no mail loops)
    wants_latest: bool = False
    message: EmailMessage = field(default_factory=EmailMessage)
    authentication: str = ""  # the school mail server's verdict on the sender (``authentication``)

    @property
    def key(self) -> str:
        """What the mailbox takes once: the Message-ID together with each attachment's content hash — a
        reused Message-ID (a resend, a gateway, a script) with other workbooks is another message, a true
        redelivery (same Message-ID, same attachments) is the same one."""
        hashes = sorted(hashlib.sha256(data).hexdigest() for _, data in [*self.attachments, *self.archives])
        return " ".join([self.message_id, *hashes])


_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)", re.IGNORECASE)


def authentication(message: EmailMessage, server: str) -> str:
    """The verdict of the school's mail server on who sent the message (RFC 8601 Authentication-Results), in
    Chinese: "通过（dmarc=pass …）", "未通过（spf=fail …）" or "" when there is none. Only a header whose authserv-id
    is ``server`` counts when it is set — anyone can write such a header into the mail they send; without it the
    topmost header (the last server's) is read, and the verdict says the server was not checked."""
    for value in message.get_all("Authentication-Results") or []:
        text = " ".join(str(value).split())
        serv_id = text.partition(";")[0].strip().split(" ")[0].lower()
        if server and serv_id != server.lower():
            continue
        results: dict[str, str] = {}
        for method, result in _RESULT.findall(text.partition(";")[2]):
            results.setdefault(method.lower(), result.lower())
        if not results:
            continue
        shown = " ".join(f"{m}={r}" for m, r in results.items())
        passed = results.get("dmarc") == "pass" or ("dmarc" not in results and "pass" in (results.get("dkim"),
                                                                                          results.get("spf")))
        where = serv_id if server else f"{serv_id or '未知服务器'}，未核对服务器名"
        return f"{'通过' if passed else '未通过'}（{shown}；{where}）"[:160]
    return ""


def read_message(raw: bytes, auth_server: str = "") -> IncomingMail:
    """Parse a message: its key, sender, and every spreadsheet attachment — also inside a forwarded message."""
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    message_id = _clean_header(str(message.get("Message-ID", "") or ""))
    key = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    # the sender is the From: address only: Reply-To says where answers may go, never who sent the mail (and the
    # reply goes to From too, so that a forged From reaches the office it names, not whoever set Reply-To)
    senders = getaddresses([str(message.get("From") or "")])
    sender = next((a for _, a in senders if "@" in a), "").strip().lower()
    subject = _clean_header(str(message.get("Subject", "") or ""))
    sent_at = ""
    try:
        date = message.get("Date")
        if date:
            sent_at = parsedate_to_datetime(str(date)).isoformat(timespec="seconds")
    except (TypeError, ValueError, IndexError):
        sent_at = ""
    found = IncomingMail(key, sender, subject, sent_at, automatic=is_automatic(message, sender), message=message)
    found.authentication = authentication(message, auth_server)
    found.attachments = list(_spreadsheets(message))
    found.archives = list(_archives(message))
    body = _text_of(message)
    found.wants_latest = LATEST_WORD in subject or (not found.attachments and LATEST_WORD in body[:200])
    return found


_ROBOTS = re.compile(r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|auto[-_.]?reply)"
                     r"([-+_.].*)?$")


def is_automatic(message: EmailMessage, sender: str) -> bool:
    """Mail that answers mail, in every way responders announce it (FIELD-NOTES "Mail that answers mail"):
    Auto-Submitted (RFC 3834), X-Autoreply, X-Autorespond, X-Auto-Response-Suppress, Precedence bulk/junk/list, a
    list's List-Id, an empty Return-Path (a bounce), or a robot's address. Such mail is never answered."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return_path = message.get("Return-Path")
    return (auto not in ("", "no") or precedence in ("bulk", "junk", "list", "auto_reply")
            or any(message.get(h) is not None for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress",
                                                         "List-Id"))
            or (return_path is not None and str(return_path).strip() in ("<>", ""))
            or bool(_ROBOTS.match(sender.partition("@")[0])) or not sender)


def _spreadsheets(message: EmailMessage) -> Iterator[tuple[str, bytes]]:
    for part in message.walk():  # walk() descends into message/rfc822 parts: a forwarded mail's attachments too
        if part.is_multipart():
            continue
        name = attachment_name(part)
        ctype = part.get_content_type()
        if not (name.lower().endswith(SPREADSHEET_SUFFIXES) or ctype == "/".join(XLSX_TYPE)):
            continue
        try:
            data = part.get_payload(decode=True)
        except (ValueError, TypeError):
            data = None
        if isinstance(data, bytes):
            yield safe_name(name or "附件.xlsx"), data


def _archives(message: EmailMessage) -> Iterator[tuple[str, bytes]]:
    for part in message.walk():
        name = "" if part.is_multipart() else attachment_name(part)
        if name.lower().endswith(ARCHIVE_SUFFIXES):
            data = part.get_payload(decode=True)
            yield safe_name(name), data if isinstance(data, bytes) else b""


def attachment_name(part: Message) -> str:
    """An attachment's file name as its sender wrote it. ``email`` decodes RFC 2231 (filename*=gbk''…) and
    encoded words (=?gb2312?B?…?=) by their charset, but turns raw 8-bit header bytes — what old clients send,
    in GBK — into �: those are read again from the header's bytes (``decoded_name``)."""
    name = part.get_filename() or ""
    if "\ufffd" not in name:
        return name
    probe = Message()
    for header, value in part.raw_items():
        if header.lower() in ("content-disposition", "content-type"):
            probe[header] = decoded_name(str(value).encode("utf-8", "surrogateescape"))
    return probe.get_filename() or name


def _text_of(message: EmailMessage) -> str:
    try:
        body = message.get_body(preferencelist=("plain",))
        return str(body.get_content()) if body is not None else ""
    except (KeyError, LookupError, ValueError):
        return ""
