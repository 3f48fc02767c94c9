"""Where a return came from, judged before it merges: a workbook in another office's 交回/ folder (refused for that
place only), and a mailed return whose sender cannot be taken at their word (held for the coordinator)."""

from __future__ import annotations

from lixiao.core.storage.ledger import Channel, Origin
from lixiao.core.storage.store import WorkbookRow
from lixiao.sync.datafolder import DataFolder

from .checks import CheckedReturn
from .inbox import SyncSettings

WRONG_SENDER_HOLD = ("发件人 {sender} 在离校点通讯录中是{offices}的邮箱，交回的却是“{workbook}”的工作簿："
                     "整个文件尚未生效，等待协调人核对（lixiao review）后确认")
UNVERIFIED_SENDER_HOLD = ("学校邮件服务器没有证明这封邮件确实由 {sender} 发出（{verdict}；lixiao.toml [mail] "
                          "require_authentication）：整个文件尚未生效，等待协调人核对后确认")
UNKNOWN_SENDER_FLAG = ("交回人 {sender} 不在离校点通讯录中（lixiao.toml [mail] unknown_sender = \"flag\"）：已合并；"
                       "请核对发件人，确认无误后 lixiao review resolve 编号 dismiss")
UNKNOWN_SENDER_HOLD = ("交回人 {sender} 不在离校点通讯录中（lixiao.toml [mail] unknown_sender = \"hold\"）："
                       "整个文件尚未生效，等待协调人核对发件人后确认")


def misdirected(folder: DataFolder, origin: Origin, workbook: WorkbookRow) -> tuple[str, str] | None:
    """The code and message of a refusal for where the file came from (``ORIGIN_REFUSALS``; None when it came
    from a place entitled to return it). Recorded per place: the same bytes from the right place are taken."""
    misplaced = _wrong_office(folder, origin, workbook)
    return ("wrong_office", misplaced) if misplaced else None


def office_title(folder: DataFolder, office: str) -> str:
    code, _, college = office.partition("|")
    codes = {cp.code: cp for cp in folder.flow.checkpoints}
    return codes[code].title_for(college) if code in codes else office


def _wrong_office(folder: DataFolder, origin: Origin, workbook: WorkbookRow) -> str:
    """A workbook put into another office's shared 交回/ folder is refused: a folder is the office's own door,
    so a file there speaks for that office only ('' when it is in its own office's folder, or came otherwise)."""
    if origin.channel is not Channel.SHARE or not origin.office or not workbook.office \
            or origin.office == workbook.office:
        return ""
    return (f"这是“{office_title(folder, workbook.office)}”的工作簿，却放在了“{office_title(folder, origin.office)}”"
            f"的交回文件夹里：没有处理；请把它放进“{office_title(folder, workbook.office)}”自己的交回文件夹")


def sender_doubt(folder: DataFolder, ret: CheckedReturn, settings: SyncSettings) -> str:
    """Why a mailed return cannot be taken on its sender's word ("" when it can): the server did not pass the
    sender where that is required, the sender is not in the directory ([mail] unknown_sender = "hold"), or the
    sender's address belongs to other offices than the workbook's. A From: line is whatever the sender typed."""
    origin = ret.item.origin
    if origin.channel is not Channel.MAIL:
        return ""
    if settings.require_authentication and not origin.authentication.startswith("通过"):
        return UNVERIFIED_SENDER_HOLD.format(sender=origin.sender, verdict=origin.authentication or "没有验证结果")
    if not origin.sender_known:
        return UNKNOWN_SENDER_HOLD.format(sender=origin.sender) if settings.hold_unknown_senders else ""
    if ret.workbook.office and ret.workbook.office not in origin.offices:
        return WRONG_SENDER_HOLD.format(
            sender=origin.sender, offices="、".join(f"“{office_title(folder, o)}”" for o in origin.offices),
            workbook=office_title(folder, ret.workbook.office))
    return ""
