"""The daemon's live loop: poll the offices' shared folders, fetch the mailbox, issue fresh workbooks.

Each part runs on its own interval under the writer lock, and a failure of one (a mail server down, a wrong
password, a share gone) is logged once and retried later: the inbox and the other channels keep running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from email.message import EmailMessage
from pathlib import Path

from lixiao.core.storage.offices import Office
from lixiao.sync.datafolder import DataFolder, DataFolderError
from lixiao.sync.locking import LockBusyError, writer_lock
from lixiao.sync.messages import OUTCOME_LABELS, strip_code
from lixiao.sync.takeback.outcomes import FileOutcome, Outcome

from .batch import recover_staging
from .delivery import DeliveryReport, deliver, refresh, routes
from .mail import MailError, fetch_mail
from .settings import DeliverySettings, MailSettings, delivery_settings, mail_settings
from .shares import take_share_returns

LOCK_ATTEMPT = 2.0
REFRESH_CHECK = 30.0  # seconds between looks for offices whose readiness changed
REFRESH_DELAY = 5.0  # after a merge: look this much later, so that a burst of returns is one look


class LiveLoop:
    """The share, mail and refresh parts of ``lixiao watch``."""

    def __init__(self, folder: DataFolder, log: logging.Logger) -> None:
        self.folder = folder
        self.log = log
        self.settings: DeliverySettings = delivery_settings(folder.root)
        self.mail: MailSettings | None = mail_settings(folder.root)
        self.next_share = 0.0
        self.next_mail = 0.0
        self.next_refresh = 0.0
        self.refresh_due = self.settings.auto_refresh  # at start: workbooks may have gone stale while stopped
        self._last_error: dict[str, str] = {}
        self.mail_failures = 0
        self._share_problems: set[str] = set()
        self._share_seen: dict[Path, tuple[int, int]] = {}  # size and mtime of each share file at the last poll
        self._still_arriving: set[str] = set()  # hashes of share files said to be still arriving (said once)
        self._directory_checked = float("-inf")
        self._directory_shares = False

    @property
    def active(self) -> bool:
        """True when there is anything to do (a share root, a share in the directory, or a mailbox); the
        directory is looked at once per share poll, not on every turn of the daemon's loop."""
        if self.mail or self.settings.share_root:
            return True
        now = time.monotonic()
        if now >= self._directory_checked + self.settings.share_poll:
            self._directory_checked = now
            self._directory_shares = any(o.share for o in self.folder.store.offices())
        return self._directory_shares

    def _error(self, part: str, message: str) -> None:
        if self._last_error.get(part) != message:
            self.log.error("%s", message)
        self._last_error[part] = message

    def _ok(self, part: str) -> None:
        if self._last_error.pop(part, None):
            self.log.info("%s 已恢复", {"mail": "邮件收取", "share": "共享文件夹", "refresh": "新版工作簿"}[part])

    def tick(self, key: bytes, merged_elsewhere: bool) -> int:
        """Run whatever part is due; returns how many returns merged."""
        now = time.monotonic()
        merged = 0
        if merged_elsewhere:
            self._merged()
        if now >= self.next_share:
            self.next_share = now + self.settings.share_poll
            merged += self._locked("share", lambda: self._shares(key))
        if self.mail is not None and now >= self.next_mail:
            merged += self._locked("mail", lambda: self._fetch(key), hold=False)  # the fetch locks per workbook
            delay = self.mail.poll * (2 ** min(self.mail_failures, 4) if self.mail_failures else 1)
            self.next_mail = time.monotonic() + min(delay, 900)
        if merged:
            self._merged()
        if self.refresh_due and time.monotonic() >= self.next_refresh:
            self.next_refresh = time.monotonic() + REFRESH_CHECK
            self._locked("refresh", self._refresh)
        return merged

    def _merged(self) -> None:
        """Something merged: readiness may have changed; look soon (coalesced), not at once."""
        if self.settings.auto_refresh:
            self.refresh_due = True
            self.next_refresh = min(self.next_refresh, time.monotonic() + REFRESH_DELAY) if self.next_refresh \
                else time.monotonic() + REFRESH_DELAY

    def _lock(self) -> AbstractContextManager[None]:
        return writer_lock(self.folder.root, wait=LOCK_ATTEMPT)

    def _locked(self, part: str, work: Callable[[], int], hold: bool = True) -> int:
        try:
            with self._lock() if hold else nullcontext():
                done = work()
        except LockBusyError:
            return 0
        except (MailError, DataFolderError, OSError) as exc:
            if part == "mail":
                self.mail_failures += 1
            self._error(part, f"{ {'mail': '收取邮件', 'share': '共享文件夹', 'refresh': '新版工作簿'}[part]}失败："
                              f"{exc}（其他收件渠道照常运行，稍后重试）")
            return 0
        if part == "mail":
            self.mail_failures = 0
        self._ok(part)
        return done

    def _log(self, outcome: FileOutcome) -> None:
        self.log.info("%s：%s（记录 %d，拒绝 %d，冲突 %d）%s", outcome.file, OUTCOME_LABELS[outcome.outcome],
                      outcome.applied, outcome.refused, outcome.conflicts,
                      "；".join(strip_code(r) for r in outcome.reasons[:3]))

    def _shares(self, key: bytes) -> int:
        recover_staging(self.folder)
        problems: list[str] = []
        arriving: set[str] = set()

        def said(outcome: FileOutcome) -> None:
            if outcome.outcome is Outcome.DEFERRED:
                arriving.add(outcome.hash)
                if outcome.hash in self._still_arriving:
                    return  # said at the first poll that found it incomplete, not every poll
            self._log(outcome)

        outcomes = take_share_returns(self.folder, key, min_age=0, on_outcome=said, problems=problems,
                                      last_seen=self._share_seen)
        self._still_arriving = arriving
        for problem in problems:
            if problem not in self._share_problems:
                self.log.error("%s", problem)  # once, not every poll
        self._share_problems = set(problems)
        return sum(1 for o in outcomes if o.outcome == "merged")

    def _fetch(self, key: bytes) -> int:
        assert self.mail is not None
        with self._lock():
            recover_staging(self.folder)
        result = fetch_mail(self.folder, self.mail, key, self.send_latest, lock=self._lock)
        for outcome in result.outcomes:
            self._log(outcome)
        if result.messages:
            self.log.info("收取邮件 %d 封（重复 %d 封），回复 %d 封", result.messages, result.duplicates,
                          result.replies)
        return sum(1 for o in result.outcomes if o.outcome == "merged")

    def _refresh(self) -> int:
        done = refresh(self.folder, settings=self.settings, mail=self.mail, mail_known=True)
        self.refresh_due = bool(done.waiting)
        for line in done.report.lines:
            if not line[3]:
                self.log.error("投递 %s（%s %s）失败：%s", line[0], line[1], line[2], line[4])
        return 0

    def send_latest(self, office: Office, message: EmailMessage, sender: str) -> str:
        """Answer a 最新 request: the office's current workbooks, as a reply to the sender."""
        route = next((r for r in routes(self.folder, self.settings, self.mail, mail_known=True)
                      if r.key == office.key), None)
        if route is None:
            return f"{office.title}：不在当前流程中"
        report = DeliveryReport()
        deliver(self.folder, route, self.mail, self.settings, report, reply_to=message, to=[sender])
        return "；".join(f"{line[0]}：{'已发送' if line[3] else line[4]}" for line in report.lines)
