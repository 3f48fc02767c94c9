"""A long audit chain's hashes checked beside the replay by a helper process: the same findings, in the same
order, as the replay hashing every event itself — and the same when the helper gives no usable answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lixiao.core.manual.model import Status
from lixiao.core.storage import chainhash
from lixiao.core.storage.store import Store

from .conftest import make_student

STEPS = ("electricity", "water", "dorm_items", "network", "library")


@pytest.fixture
def tampered(tmp_path: Path) -> Store:
    """A store whose chain has 100+ events, three of them edited behind the triggers' back and one deleted."""
    store = Store.create(tmp_path / "store.db", "2026届本科毕业生离校", 2026, "undergrad")
    store.upsert_students([make_student(f"08030101{n:02d}") for n in range(10)], source="test")
    for round_ in range(2):
        with store.transaction():
            store.write_statuses([(f"08030101{n:02d}", step, Status.PASSED if round_ else Status.FAILED, "", "applied")
                                  for n in range(10) for step in STEPS], source="test", operator="张老师")
    store.db.execute("DROP TRIGGER audit_no_update")
    store.db.execute("DROP TRIGGER audit_no_delete")
    for seq in (5, 60, 100):  # early (the helper's part), middle, late (the replay's own part)
        store.db.execute("UPDATE audit SET operator = 'mallory' WHERE seq = ?", [seq])
    store.db.execute("DELETE FROM audit WHERE seq = 30")
    store.db.conn.commit()
    return store


def findings(store: Store, monkeypatch: pytest.MonkeyPatch, beside: bool) -> list[str]:
    """The chain's problems as replay() finds them, with every chain long enough for the helper or none."""
    monkeypatch.setattr(chainhash, "BESIDE_FROM", 0 if beside else 10**12)
    return store.replay().chain


def test_the_helper_finds_what_the_replay_finds(tampered: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside or not, the same lines in chain order; and the helper really hashed its share."""
    started: list[int] = []
    real = chainhash.start

    def start(path: Path, upto: int) -> Any:
        started.append(upto)
        return real(path, upto)

    monkeypatch.setattr(chainhash, "start", start)
    here = findings(tampered, monkeypatch, beside=False)
    assert here == ["审计记录 5 的内容与哈希不符（记录被改动）", "审计记录 31 的前一哈希不连续（记录被删除或插入）",
                    "审计记录 60 的内容与哈希不符（记录被改动）", "审计记录 100 的内容与哈希不符（记录被改动）"]
    assert started == []
    assert findings(tampered, monkeypatch, beside=True) == here
    [upto] = started
    assert 5 < upto < 111  # the helper had a share and the replay one (111 events less the deleted one)
    hashed, bad = chainhash.bad_hashes(tampered.path, upto)
    assert hashed == upto - 1 and bad == [seq for seq in (5, 60, 100) if seq <= upto]


@pytest.mark.parametrize("answer", ["not json", '{"hashed": 1, "bad": []}', '{"hashed": 89, "bad": ["5"]}'])
def test_a_helper_without_a_usable_answer_is_replaced(tampered: Store, monkeypatch: pytest.MonkeyPatch,
                                                      answer: str) -> None:
    """A helper that answers garbage, a wrong count or wrong types: the replay hashes those events itself."""
    monkeypatch.setattr(chainhash, "start", lambda path, upto: subprocess.Popen(
        [sys.executable, "-c", f"print({answer!r})"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    assert findings(tampered, monkeypatch, beside=True) == findings(tampered, monkeypatch, beside=False)
    assert len(findings(tampered, monkeypatch, beside=True)) == 4


def test_a_helper_that_cannot_start_is_replaced(tampered: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """No helper at all (no process could start): the replay hashes every event."""
    monkeypatch.setattr(chainhash, "start", lambda path, upto: None)
    assert len(findings(tampered, monkeypatch, beside=True)) == 4
