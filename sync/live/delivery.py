"""Delivering each office its workbooks (shared folder, e-mail) and taking returns from the shared folders;
fresh generations when an office's readiness changed.

A shared folder of an office holds ``待办/`` (its current workbooks; older generations lixiao wrote move to
``待办/旧版/`` unless staff changed them there), ``交回/`` (polled for returns), ``交回/已处理/`` (returns once
decided) and ``交回/回执/`` (their receipts, or a .说明.txt for a refused file).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from lixiao.core.clearance.issuance import Baseline, BaselineError, IssueError, WorkbookPlan, issuable
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.offices import Office, OfficeInstance, office_instances
from lixiao.core.storage.store import WorkbookRow
from lixiao.sync.datafolder import DataFolder, DataFolderError
from lixiao.sync.issuing import Issued, issue_workbooks, plan_all
from lixiao.sync.takeback.inbox import unique_path

from .mail import MailError, send_messages
from .mailmsg import workbook_message
from .settings import DeliverySettings, MailSettings, delivery_settings, mail_settings

TODO, RETURN, DONE, RECEIPTS, OLD = "待办", "交回", "已处理", "回执", "旧版"
_GENERATION = re.compile(r"^(?P<stem>.+)-第(?P<n>\d+)版\.xlsx$")
log = logging.getLogger("lixiao.watch")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one office's workbooks go: its directory entry (or a default one), its shared folder, its addresses."""

    instance: OfficeInstance
    entry: Office
    share: Path | None
    emails: tuple[str, ...]

    @property
    def key(self) -> str:
        """The office's directory key."""
        return self.instance.key

    @property
    def channels(self) -> str:
        """The channels as a Chinese label."""
        parts = (["共享文件夹"] if self.share else []) + (["邮件"] if self.emails else [])
        return "、".join(parts) or "无"


def share_dir_name(title: str) -> str:
    """An office's folder name under the share root (its title, filesystem-safe)."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", title).strip(". ") or "离校点"


def routes(folder: DataFolder, settings: DeliverySettings | None = None, mail: MailSettings | None = None,
           *, mail_known: bool = False) -> list[Route]:
    """Every office and its channels: a directory entry's shared folder (relative to [delivery] share_root) and
    addresses; an office without an entry (or with neither) gets ``<share_root>/<office>/`` when share_root is
    set. Addresses count only when [mail] is configured."""
    settings = settings or delivery_settings(folder.root)
    if not mail_known:
        mail = mail_settings(folder.root)
    entries = {o.key: o for o in folder.store.offices()}
    found = []
    for instance in office_instances(issuable(folder.flow, folder.year), folder.store.colleges()):
        entry = entries.get(instance.key) or Office(instance.checkpoint.code, instance.college, instance.title)
        share: Path | None = None
        if entry.share:
            share = Path(entry.share).expanduser()
            if not share.is_absolute():
                share = (settings.share_root / share) if settings.share_root else (folder.root / share)
        elif settings.share_root and not (entry.emails and mail):
            share = settings.share_root / share_dir_name(instance.title)
        found.append(Route(instance, entry, share, entry.emails if mail else ()))
    return found


# -- out ----------------------------------------------------------------------------------------------------
@dataclass
class DeliveryReport:
    """What one send did, per office."""

    lines: list[tuple[str, str, str, bool, str]] = field(default_factory=list)  # office, channel, target, ok, note
    issued: list[Issued] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """How many deliveries failed."""
        return sum(1 for line in self.lines if not line[3])


def current_workbooks(folder: DataFolder, route: Route) -> list[WorkbookRow]:
    """The newest generation of each scope of an office."""
    return folder.store.latest_workbooks(route.key)


def deliver(folder: DataFolder, route: Route, mail: MailSettings | None, settings: DeliverySettings,
            report: DeliveryReport, *, resend: bool = False, reply_to: EmailMessage | None = None,
            to: list[str] | None = None) -> None:
    """Deliver an office's current workbooks through each of its channels (skipping what already reached a
    target, unless ``resend``)."""
    books = current_workbooks(folder, route)
    if not books:
        report.lines.append((route.instance.title, "-", "-", False, "还没有签发工作簿（lixiao issue）"))
        return
    if route.share is not None and reply_to is None:
        _deliver_share(folder, route, books, report, resend)
    addresses = to if to is not None else list(route.emails)
    if addresses and mail is not None:
        target = ", ".join(addresses)
        todo = [b for b in books if resend or reply_to is not None or not folder.store.delivered(b.id, "mail", target)]
        if not todo:
            report.lines.append((route.instance.title, "邮件", target, True, "已发送过，未重发（--resend 可重发）"))
            return
        attachments = [(Path(b.path).name, (folder.root / b.path).read_bytes()) for b in todo]
        message = workbook_message(mail, route.entry, addresses, folder.session_name, attachments,
                                   settings.deadline, bool(route.instance.checkpoint.requires), reply_to)
        try:
            send_messages(mail, [message])
        except MailError as exc:
            for book in todo:
                folder.store.record_delivery(route.key, book.id, "mail", target, False, str(exc))
            report.lines.append((route.instance.title, "邮件", target, False, str(exc)))
            return
        for book in todo:
            folder.store.record_delivery(route.key, book.id, "mail", target, True)
        report.lines.append((route.instance.title, "邮件", target, True, f"{len(todo)} 个工作簿"))


def _deliver_share(folder: DataFolder, route: Route, books: list[WorkbookRow], report: DeliveryReport,
                   resend: bool) -> None:
    assert route.share is not None
    todo_dir = route.share / TODO
    target = str(route.share)
    try:
        for sub in (todo_dir, route.share / RETURN):
            sub.mkdir(parents=True, exist_ok=True)
        written = 0
        for book in books:
            source = folder.root / book.path
            destination = todo_dir / Path(book.path).name
            if resend or not destination.exists() or not folder.store.delivered(book.id, "share", target):
                write_atomically(destination, source.read_bytes())
                written += 1
            _retire_older(folder, todo_dir, destination.name)
            folder.store.record_delivery(route.key, book.id, "share", target, True)
    except OSError as exc:
        report.lines.append((route.instance.title, "共享文件夹", target, False, f"无法写入：{exc.strerror or exc}"))
        return
    report.lines.append((route.instance.title, "共享文件夹", target, True,
                         f"{written} 个工作簿" if written else "已是最新"))


def _retire_older(folder: DataFolder, todo_dir: Path, current: str) -> None:
    """Move older generations of the same workbook to 旧版/ — only copies still exactly as lixiao wrote them
    (a file staff ticked in place stays where they left it)."""
    match = _GENERATION.match(current)
    if not match:
        return
    for path in todo_dir.glob("*.xlsx"):
        other = _GENERATION.match(path.name)
        if not other or other["stem"] != match["stem"] or int(other["n"]) >= int(match["n"]):
            continue
        if (todo_dir / f".~lock.{path.name}#").exists() or (todo_dir / f"~${path.name}").exists():
            continue  # open in LibreOffice or Excel right now
        issued = next(folder.root.glob(f"outbox/*/{path.name}"), None)
        try:
            if issued is None or path.read_bytes() != issued.read_bytes():
                continue
            (todo_dir / OLD).mkdir(exist_ok=True)
            path.replace(unique_path(todo_dir / OLD / path.name))
        except OSError:
            continue


def send_offices(folder: DataFolder, checkpoints: list[str] | None = None, *, resend: bool = False,
                 progress: Callable[[int, int, str], None] | None = None) -> DeliveryReport:
    """``lixiao send``: every reachable office of ``checkpoints`` (default all) gets its current workbooks —
    generation 1 first where none was issued, a new generation where its students or 前置条件 changed."""
    settings, mail = delivery_settings(folder.root), mail_settings(folder.root)
    every = routes(folder, settings, mail, mail_known=True)
    unknown = set(checkpoints or []) - {r.instance.checkpoint.code for r in every}
    if unknown:
        raise DataFolderError(f"没有需要工作簿的离校点 {'、'.join(sorted(unknown))}（lixiao flow show 查看代码）")
    reachable = [r for r in every if (not checkpoints or r.instance.checkpoint.code in checkpoints)
                 and (r.share or r.emails)]
    if not reachable:
        raise DataFolderError("没有可投递的离校点：请用 lixiao offices import 导入通讯录（邮箱或共享文件夹），"
                              "或在 lixiao.toml 的 [delivery] 设置 share_root"
                              + ("" if mail else "；用邮件投递还需要 [mail] 设置"))
    try:
        plans = plan_all(folder, sorted({r.instance.checkpoint.code for r in reachable}), None)
    except IssueError as exc:
        raise DataFolderError(str(exc)) from None
    report = DeliveryReport()
    fresh = []
    for route in reachable:
        mine = [p for p in plans if p.office == route.key]
        fresh += mine if not folder.store.latest_workbooks(route.key) else \
            stale_plans(folder, route, mine) + outdated_plans(folder, route, mine)
    if fresh:
        report.issued += issue_workbooks(folder, fresh, progress)
    for index, route in enumerate(reachable):
        if progress:
            progress(index, len(reachable), f"投递 {route.instance.title}")
        deliver(folder, route, mail, settings, report, resend=resend)
    return report


# -- fresh generations --------------------------------------------------------------------------------------
@dataclass
class Refresh:
    """What a refresh did: workbooks issued, offices that wait for their interval."""

    issued: list[Issued] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    report: DeliveryReport = field(default_factory=DeliveryReport)


def stale_plans(folder: DataFolder, route: Route, plans: list[WorkbookPlan]) -> list[WorkbookPlan]:
    """The plans of an office whose students or 前置条件 differ from its newest generation of the same scope."""
    latest = {w.scope: w for w in folder.store.latest_workbooks(route.key)}
    return [p for p in plans if p.scope in latest and latest[p.scope].readiness != p.readiness_digest()]


def outdated_plans(folder: DataFolder, route: Route, plans: list[WorkbookPlan]) -> list[WorkbookPlan]:
    """The plans whose newest generation never reached this office and no longer shows the store's values (a
    status set or fed since ``lixiao issue``): delivering that copy would only bring back conflicts, so ``send``
    issues the current one instead. A workbook already delivered is left to ``stale_plans``: reissuing it after
    every return would send the office a new copy each time."""
    latest = {w.scope: w for w in folder.store.latest_workbooks(route.key)}
    stale = {p.scope for p in stale_plans(folder, route, plans)}
    found = []
    for plan in plans:
        book = latest.get(plan.scope)
        if book is None or plan.scope in stale or _reached(folder, route, book):
            continue
        try:
            issued = Baseline.from_text(book.baseline)
        except BaselineError:
            found.append(plan)
            continue
        if _values(issued) != _values(plan.baseline()):
            found.append(plan)
    return found


def _reached(folder: DataFolder, route: Route, book: WorkbookRow) -> bool:
    """Whether a workbook already reached any of the office's targets."""
    return (route.share is not None and folder.store.delivered(book.id, "share", str(route.share))) or \
        (bool(route.emails) and folder.store.delivered(book.id, "mail", ", ".join(route.emails)))


def _values(baseline: Baseline) -> tuple[object, ...]:
    """What a workbook shows of the store: each cell's status, the 备注, the batch ticks and the lifted waivers."""
    cells = {no: {step: c.status for step, c in steps.items()} for no, steps in baseline.cells.items()}
    return cells, baseline.remarks, baseline.batch, baseline.waivers


def refresh(folder: DataFolder, *, force: bool = False, settings: DeliverySettings | None = None,
            mail: MailSettings | None = None, mail_known: bool = False,
            progress: Callable[[int, int, str], None] | None = None) -> Refresh:
    """Issue a fresh generation to every office with a channel whose readiness changed, at most one per office
    per [delivery] refresh_minutes, and deliver it; the caller holds the writer lock."""
    settings = settings or delivery_settings(folder.root)
    if not mail_known:
        mail = mail_settings(folder.root)
    result = Refresh()
    offices = [r for r in routes(folder, settings, mail, mail_known=True) if r.share or r.emails]
    if not offices:
        return result
    codes = sorted({r.instance.checkpoint.code for r in offices})
    by_office: dict[str, list[WorkbookPlan]] = {}
    for plan in plan_all(folder, codes, None):
        by_office.setdefault(plan.office, []).append(plan)
    interval = settings.refresh_minutes * 60
    for route in offices:
        stale = stale_plans(folder, route, by_office.get(route.key, []))
        if not stale:
            continue
        last = folder.store.last_issued(route.key)
        if not force and last and _age(last) < interval:
            result.waiting.append(route.instance.title)
            continue
        issued = issue_workbooks(folder, stale, progress, workers=1)
        result.issued += issued
        log.info("%s：前置条件或名单有变化，已签发新版工作簿（%s）", route.instance.title,
                 "、".join(i.path.name for i in issued))
        deliver(folder, route, mail, settings, result.report)
    return result


def _age(stamp: str) -> float:
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return float("inf")
    current = datetime.now(then.tzinfo) if then.tzinfo else datetime.now()
    return (current - then).total_seconds()


