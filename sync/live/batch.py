"""One-shot sync of the inbox and the offices' 交回/ folders, and what a crash leaves to recover (staged copies,
missing receipts); the report refresh after a batch."""

from __future__ import annotations

from pathlib import Path

from lixiao.core.storage.ledger import LedgerState
from lixiao.sync.datafolder import DataFolder, DataFolderError, secret_key
from lixiao.sync.messages import os_error_text
from lixiao.sync.publishing import publish_public_page
from lixiao.sync.takeback.inbox import hash_regular, inbox_files, safe_name, sync_settings, wait_until_settled
from lixiao.sync.takeback.outcomes import FileOutcome
from lixiao.sync.takeback.pipeline import process_file
from lixiao.sync.takeback.receipts import write_receipt


def sync(folder: DataFolder, files: list[Path] | None = None, dry_run: bool = False,
         min_age: float = 1.0, confirm: bool = False, problems: list[str] | None = None) -> list[FileOutcome]:
    """Process the given files, or the whole inbox and every office's 交回/, once (the caller refreshes the
    reports afterwards); an office's 交回/ that cannot be used safely is said in ``problems``.

    Files copied a moment ago are waited for (up to [sync] settle_wait seconds) rather than deferred,
    so that `cp f inbox/ && lixiao sync` processes f.
    """
    recover_staging(folder)
    recover_receipts(folder)
    key = secret_key(folder.root)
    settings = sync_settings(folder.root)
    if confirm:
        for path in files or []:
            _must_be_held(folder, path)
    if files is None:
        targets = inbox_files(folder)
        wait_until_settled(targets, min_age, settings.settle_wait)
    else:
        targets = files
    outcomes = [process_file(folder, path, key, dry_run, min_age, confirm=confirm, settings=settings)
                for path in targets]
    if files is None and not dry_run:  # the offices' shared folders are an inbox too
        from .shares import take_share_returns

        outcomes += take_share_returns(folder, key, min_age=min_age, settle_wait=settings.settle_wait,
                                       problems=problems)
    return outcomes


def _must_be_held(folder: DataFolder, path: Path) -> None:
    """--confirm applies only to a return the pipeline held: anything else would skip the revocation check."""
    try:
        digest_hex = hash_regular(path)
    except OSError as exc:
        raise DataFolderError(f"无法读取 {safe_name(path.name)}：{os_error_text(exc)}") from None
    row = folder.store.ledger(digest_hex)
    if row is None or row.outcome is not LedgerState.HELD:
        raise DataFolderError(f"{safe_name(path.name)} 不是待确认（held/）的文件，--confirm 不适用；"
                              "新交回的文件请直接 lixiao sync 处理")


def refresh_reports(folder: DataFolder) -> Path:
    """Regenerate reports/ (called once after a batch of returns, never per file), and the page safe to publish
    where the folder publishes it (sync/publishing.py)."""
    from lixiao.reports.build import render_report

    folder.store.refuse_if_damaged("不生成报表和查询页")  # nothing is published from a store whose check failed
    index = render_report(folder.store, folder.flow, folder.root / "reports", folder.root / "templates").index
    publish_public_page(folder)
    return index


def recover_staging(folder: DataFolder) -> None:
    """After a crash: staged copies of merged files go to the archive, others are dropped (inbox still has
    them). Cheap when nothing is staged: the daemon calls it before each batch."""
    staging = folder.root / "archive" / ".staging"
    if staging.is_dir():
        for staged in staging.iterdir():
            row = folder.store.ledger(staged.stem)
            if row and row.outcome is LedgerState.MERGED:
                target = folder.root / "archive" / staged.name
                if target.exists():
                    staged.unlink()
                else:
                    staged.replace(target)
            elif not row or row.outcome is None:
                staged.unlink()


def recover_receipts(folder: DataFolder) -> None:
    """After a crash between a commit and its receipt: every merged or held return whose receipt is missing
    gets it, built from the ledger (once per sync, and when the daemon starts — it reads the whole ledger)."""
    for row in folder.store.ledger_rows():
        if row.outcome in (LedgerState.MERGED, LedgerState.HELD):
            receipt = row.details.receipt
            if receipt and not (folder.root / receipt).exists():
                write_receipt(folder, row)
