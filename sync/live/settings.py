"""The live loop's settings: [mail] (SMTP out, IMAP in) and [delivery] (shared folders, fresh workbooks).

A mail password never sits in lixiao.toml: it comes from an environment variable (``password_env``) or a file
readable by its owner only (``password_file``, mode 0600), and is never logged.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lixiao.sync.datafolder import SETTINGS, DataFolderError

SECURITY = ("ssl", "starttls", "none")
_DEFAULT_PORTS = {"smtp": {"ssl": 465, "starttls": 587, "none": 25}, "imap": {"ssl": 993, "starttls": 143, "none": 143}}
_MAIL_KEYS = {"address", "from_name", "user", "password_env", "password_file", "smtp_host", "smtp_port",
              "smtp_security", "imap_host", "imap_port", "imap_security", "imap_folder", "ca_file", "poll",
              "unknown_sender", "timeout", "max_attachments", "replies_per_hour", "require_authentication",
              "auth_server"}
_DELIVERY_KEYS = {"share_root", "refresh_minutes", "deadline", "auto_refresh", "share_poll"}


@dataclass(frozen=True, slots=True)
class MailSettings:
    """The [mail] section."""

    address: str
    from_name: str
    user: str
    password_env: str
    password_file: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str
    imap_port: int
    imap_security: str
    imap_folder: str
    ca_file: str
    poll: float
    timeout: float
    max_attachments: int = 20  # a message with more workbooks is refused whole, with a reply (a flood, or a mistake)
    replies_per_hour: int = 5  # replies to one sender in an hour at most: two robots answering each other stop
    auth_server: str = ""  # the authserv-id of the school's own Authentication-Results headers (the only ones read)

    def password(self) -> str:
        """The mail password, from the environment or the 0600 file; a clear error otherwise."""
        if self.password_env:
            value = os.environ.get(self.password_env, "")
            if not value:
                raise DataFolderError(f"环境变量 {self.password_env} 没有设置（[mail] password_env）：请设为邮箱的"
                                      "密码或授权码后重试")
            return value
        if self.password_file:
            path = Path(self.password_file).expanduser()
            try:
                info = path.stat()
                if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise DataFolderError(f"{path} 可被其他用户读取（权限 {stat.filemode(info.st_mode)}）：请运行 "
                                          f"chmod 600 {path}（[mail] password_file）")
                value = path.read_text("utf-8").strip()
            except OSError as exc:
                raise DataFolderError(f"无法读取密码文件 {path}（[mail] password_file）：{exc.strerror}") from None
            if not value:
                raise DataFolderError(f"密码文件 {path} 是空的（[mail] password_file）")
            return value
        raise DataFolderError("没有设置邮箱密码：在 lixiao.toml 的 [mail] 中设置 password_env（环境变量名）或 "
                              "password_file（权限 600 的文件）")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The [delivery] section."""

    share_root: Path | None
    refresh_minutes: float = 10.0
    deadline: str = ""
    auto_refresh: bool = True
    share_poll: float = 10.0  # seconds between looks into the offices' 交回/ folders (shares lose events)


def _load(root: Path) -> dict[str, object]:
    try:
        return tomllib.loads((root / SETTINGS).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataFolderError(f"{root / SETTINGS} 无法读取：{exc}") from None


def _section(data: dict[str, object], name: str, allowed: set[str]) -> dict[str, object]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise DataFolderError(f"{SETTINGS} 中 [{name}] 应为一个表")
    if "password" in section and name == "mail":
        raise DataFolderError(f"{SETTINGS} 的 [mail] 不能直接写密码（password）：请删掉它，改用 password_env"
                              "（环境变量名）或 password_file（权限 600 的文件）")
    extra = sorted(set(section) - allowed)
    if extra:
        raise DataFolderError(f"{SETTINGS} 的 [{name}] 有未知的键 {', '.join(extra)}"
                              f"（可用：{', '.join(sorted(allowed))}）")
    return section


def _text(section: dict[str, object], key: str, where: str, default: str = "") -> str:
    value = section.get(key, default)
    if not isinstance(value, str):
        raise DataFolderError(f"{SETTINGS} 中 [{where}] {key} 应为文本，现为 {value!r}")
    return value.strip()


def _number(section: dict[str, object], key: str, where: str, default: float, low: float = 0) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise DataFolderError(f"{SETTINGS} 中 [{where}] {key} 应为不小于 {low:g} 的数，现为 {value!r}")
    return float(value)


def mail_settings(root: Path) -> MailSettings | None:
    """The [mail] section, or None when the folder has none (no mail channel)."""
    data = _load(root)
    if "mail" not in data:
        return None
    section = _section(data, "mail", _MAIL_KEYS)
    address = _text(section, "address", "mail")
    if "@" not in address:
        raise DataFolderError(f"{SETTINGS} 中 [mail] address 应为协调人的邮箱地址，如 lixiao@xxx.edu.cn")
    values: dict[str, str | int] = {}
    for kind in ("smtp", "imap"):
        security = _text(section, f"{kind}_security", "mail", "ssl").lower()
        if security not in SECURITY:
            raise DataFolderError(f"{SETTINGS} 中 [mail] {kind}_security 只能是 {'、'.join(SECURITY)}，"
                                  f"现为 {security!r}")
        host = _text(section, f"{kind}_host", "mail")
        if not host:
            raise DataFolderError(f"{SETTINGS} 中 [mail] 缺少 {kind}_host（如 {kind}.exmail.qq.com）")
        port = int(_number(section, f"{kind}_port", "mail", _DEFAULT_PORTS[kind][security], 1))
        values |= {f"{kind}_security": security, f"{kind}_host": host, f"{kind}_port": port}
    if not _text(section, "password_env", "mail") and not _text(section, "password_file", "mail"):
        raise DataFolderError(f"{SETTINGS} 的 [mail] 需要 password_env（环境变量名）"
                              "或 password_file（权限 600 的文件）")
    return MailSettings(
        address=address, from_name=_text(section, "from_name", "mail", "离校工作组"),
        user=_text(section, "user", "mail", address), password_env=_text(section, "password_env", "mail"),
        password_file=_text(section, "password_file", "mail"),
        smtp_host=str(values["smtp_host"]), smtp_port=int(values["smtp_port"]),
        smtp_security=str(values["smtp_security"]), imap_host=str(values["imap_host"]),
        imap_port=int(values["imap_port"]), imap_security=str(values["imap_security"]),
        imap_folder=_text(section, "imap_folder", "mail", "INBOX"), ca_file=_text(section, "ca_file", "mail"),
        poll=_number(section, "poll", "mail", 60, 1), timeout=_number(section, "timeout", "mail", 30, 1),
        max_attachments=int(_number(section, "max_attachments", "mail", 20, 1)),
        replies_per_hour=int(_number(section, "replies_per_hour", "mail", 5, 1)),
        auth_server=_auth_server(section))


def _auth_server(section: dict[str, object]) -> str:
    server = _text(section, "auth_server", "mail")
    required = section.get("require_authentication", False)
    if not isinstance(required, bool):
        raise DataFolderError(f"{SETTINGS} 中 [mail] require_authentication 应为 true 或 false")
    if required and not server:
        raise DataFolderError(f"{SETTINGS} 的 [mail] require_authentication = true 需要同时设置 auth_server"
                              "（学校邮件服务器在 Authentication-Results 中写的名字，如 mx.xxx.edu.cn）："
                              "发件人自己也能写这个邮件头，只有学校服务器写的才可信")
    return server


def delivery_settings(root: Path) -> DeliverySettings:
    """The [delivery] section (every key optional)."""
    section = _section(_load(root), "delivery", _DELIVERY_KEYS)
    share = _text(section, "share_root", "delivery")
    auto = section.get("auto_refresh", True)
    if not isinstance(auto, bool):
        raise DataFolderError(f"{SETTINGS} 中 [delivery] auto_refresh 应为 true 或 false")
    share_root = None
    if share:
        share_root = Path(share).expanduser() if Path(share).expanduser().is_absolute() else (root / share).resolve()
    return DeliverySettings(share_root=share_root,
                            refresh_minutes=_number(section, "refresh_minutes", "delivery", 10.0),
                            deadline=_text(section, "deadline", "delivery"), auto_refresh=auto,
                            share_poll=_number(section, "share_poll", "delivery", 10.0, 0.5))
