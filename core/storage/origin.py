"""Where a return came from: its channel (inbox, a named file, an office's shared folder, mail) and, for mail,
who sent it, which offices that address belongs to, and what the school's mail server said of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Channel(StrEnum):
    """How a return reached lixiao."""

    INBOX = "inbox"  # dropped into inbox/ (by hand, USB, …)
    FILE = "file"  # named on the command line (lixiao sync FILE)
    SHARE = "share"  # an office's 交回/ folder on the shared drive
    MAIL = "mail"  # an attachment of a mail fetched over IMAP

    @property
    def label(self) -> str:
        """The channel in Chinese (receipts, reports)."""
        return {"inbox": "收件箱", "file": "命令行文件", "share": "共享文件夹", "mail": "邮件"}[self.value]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a return came from: its channel, the office (directory key) and, for mail, who sent it and when."""

    channel: Channel = Channel.INBOX
    office: str = ""  # the office directory's key (checkpoint code, or code + "|" + college)
    sender: str = ""  # the From address of a mail
    message_id: str = ""
    sent_at: str = ""  # the mail's Date
    sender_known: bool = True  # the sender is in the office directory
    offices: tuple[str, ...] = ()  # every office (directory key) the sender's address belongs to
    authentication: str = ""  # the school mail server's verdict (Authentication-Results): "pass …", "fail …", ""

    @property
    def place(self) -> str:
        """Where the file was put, the key of a refusal for its origin ("share:dorm", "mail:a@x.edu.cn", "inbox")."""
        where = self.sender if self.channel is Channel.MAIL else self.office
        return f"{self.channel.value}:{where}" if where else self.channel.value

    def describe(self) -> str:
        """One Chinese line: channel and sender (audit detail, receipts)."""
        parts = [self.channel.label]
        if self.sender:
            parts.append(self.sender + ("" if self.sender_known else "（不在通讯录中）"))
        if self.sent_at:
            parts.append(f"发送于 {self.sent_at}")
        if self.channel is Channel.MAIL:
            parts.append(f"发件人验证：{self.authentication or '邮件服务器没有给出'}")
        return "，".join(parts)
