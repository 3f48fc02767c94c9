"""The receipt of a take is built from what the take wrote, kept in memory, and is the receipt the store gives
(the autouse check in conftest compares the two for every take in this process); here: that the memory path is
the one taken for merged, refusing, conflicting and held returns, and what a crash's rebuild reads."""

from __future__ import annotations

import hashlib

import pytest

from lixiao.sync.datafolder import open_folder
from lixiao.sync.takeback import receipts

from .conftest import RECEIPTS_FROM_MEMORY, Cli, drop, edit, outbox, set_settings, statuses, sync


def taken(cli: Cli, name: str, data: bytes, *extra: str) -> dict[str, object]:
    """Drop one return and sync it; its outcome, with its content hash."""
    drop(cli, name, data)
    [item] = sync(cli, *extra)["files"]
    return {**item, "hash": hashlib.sha256(data).hexdigest()}


def test_merged_refused_and_conflicting_returns_get_their_receipt_from_memory(issued: Cli) -> None:
    """A merged return, one with a refusal and a conflict: each receipt came from memory, equal to the store's."""
    RECEIPTS_FROM_MEMORY.clear()
    issued_book = outbox(issued, "utilities")[0]
    first = taken(issued, "a.xlsx", edit(issued_book, {("0803010104", "清理电费"): True}))
    assert first["outcome"] == "merged" and first["applied"] == 1
    changes = {("0803010104", "清理电费"): "×", ("0803010103", "清理电费"): True, ("0803010105", "清理电费"): True}
    second = taken(issued, "b.xlsx", edit(issued_book, changes))
    assert second["outcome"] == "merged" and second["conflicts"] == 1
    assert [first["hash"], second["hash"]] == RECEIPTS_FROM_MEMORY
    folder = open_folder(issued.data)
    row = folder.store.ledger(str(second["hash"]))
    assert row is not None
    summary, sections = receipts.receipt_content(folder, row)  # as a crash's rebuild reads it
    folder.close()
    assert ("冲突待核对", "1") in summary and len(sections["conflicts"]) == 1 and len(sections["applied"]) >= 1


def test_a_held_return_and_its_confirmation_get_their_receipts_from_memory(issued: Cli,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Held (nothing applied, no refusals kept): its receipt from memory. Confirmed later: the chain holds the first
    take's events too, so that receipt is read from the store (the check in conftest: still equal)."""
    for no in ("0803010103", "0803010104"):
        issued("set", no, "electricity", "passed")
    issued("issue", "--checkpoint", "utilities")
    set_settings(issued.data, "sync", max_revocations=1)
    RECEIPTS_FROM_MEMORY.clear()
    data = edit(outbox(issued, "utilities")[-1], {("0803010103", "清理电费"): False, ("0803010104", "清理电费"): False})
    held = taken(issued, "two.xlsx", data)
    assert held["outcome"] == "held"
    monkeypatch.chdir(issued.data)
    assert issued("sync", "--confirm", "held/two.xlsx").exit_code == 0
    assert statuses(issued)[("0803010103", "electricity")][0] == "pending"
    assert [held["hash"]] == RECEIPTS_FROM_MEMORY
