"""The daemon's wait for a file to settle: once after its last event, with the file parsed while it waits, and
never with an answer that belongs to other bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lixiao.sync.datafolder import DataFolder, open_folder, secret_key
from lixiao.sync.live.daemon import Watcher
from lixiao.workbooks import sandbox

from .conftest import Cli, drop, edit, outbox, statuses


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The parser server up with another thread running (as in ``lixiao watch``); yields the bytes of every parse
    that went to the server, in order."""
    assert sandbox.start_server()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    parsed: list[bytes] = []
    real: Callable[..., Any] = sandbox._SERVER.run

    def counted(key: bytes, data: bytes, fault: str, timeout: float) -> Any:
        parsed.append(data)
        return real(key, data, fault, timeout)

    monkeypatch.setattr(sandbox._SERVER, "run", counted)
    yield parsed
    release.set()
    other.join()
    sandbox._AHEAD.clear()
    sandbox._SERVER._stop()


@pytest.fixture
def watched(issued: Cli) -> Iterator[tuple[DataFolder, Watcher, bytes]]:
    """A watcher on the issued folder with a settle time no test waits out (each test makes a file due itself)."""
    folder = open_folder(issued.data)
    watcher = Watcher(folder, settle=60.0)
    yield folder, watcher, secret_key(folder.root)
    folder.close()


def ticked(cli: Cli, no: str) -> bytes:
    """The utilities workbook with one electricity tick for ``no``."""
    return edit(outbox(cli, "utilities")[0], {(no, "清理电费"): True})


def make_due(watcher: Watcher, path: Path) -> None:
    """The settle time after the file's last event has passed."""
    watcher._pending[path].due = time.monotonic() - 0.01


def wait_for_ahead() -> None:
    """Every parse started ahead has answered."""
    for answer in list(sandbox._AHEAD.values()):
        answer.result(timeout=60)


def test_a_file_unchanged_since_its_last_event_is_taken_when_due(issued: Cli, watched: Any) -> None:
    """The size and mtime seen at the file's last event are the first look: a file still so when the settle time
    has passed is taken then, not after a second settle window."""
    _folder, watcher, key = watched
    path = drop(issued, "u.xlsx", ticked(issued, "0803010103"))
    watcher.notify(path)
    assert watcher.step(key) == 0  # not due yet
    make_due(watcher, path)
    assert watcher.step(key) == 1
    assert statuses(issued)[("0803010103", "electricity")][0] == "passed"


def test_a_file_that_changed_without_an_event_waits_again(issued: Cli, watched: Any) -> None:
    """A file whose size or mtime moved after its last event (an event lost) is looked at again a settle time
    later, and its last bytes are the ones taken."""
    _folder, watcher, key = watched
    path = drop(issued, "u.xlsx", ticked(issued, "0803010103"))
    watcher.notify(path)
    drop(issued, "u.xlsx", ticked(issued, "0803010104"))  # rewritten; no event reaches the watcher
    make_due(watcher, path)
    assert watcher.step(key) == 0 and path.exists()
    make_due(watcher, path)
    assert watcher.step(key) == 1
    assert set(statuses(issued)) == {("0803010104", "electricity")}


def test_a_file_is_parsed_while_it_settles_and_not_again(issued: Cli, watched: Any, server: list[bytes]) -> None:
    """The daemon hands a whole waiting file to the parser before it is due; the take uses that answer: one parse
    of those bytes in all, and the same merge."""
    _folder, watcher, key = watched
    data = ticked(issued, "0803010103")
    path = drop(issued, "u.xlsx", data)
    watcher.notify(path)
    watcher.parse_ahead(key)
    watcher.parse_ahead(key)  # the same snapshot is handed over once
    wait_for_ahead()
    assert server == [data]
    make_due(watcher, path)
    assert watcher.step(key) == 1
    assert server == [data] and not sandbox._AHEAD
    assert statuses(issued)[("0803010103", "electricity")][0] == "passed"


def test_an_answer_for_other_bytes_is_never_used(issued: Cli, watched: Any, server: list[bytes]) -> None:
    """Bytes parsed ahead and then replaced: the take parses the bytes it read and merges those."""
    _folder, watcher, key = watched
    first, second = ticked(issued, "0803010103"), ticked(issued, "0803010104")
    path = drop(issued, "u.xlsx", first)
    watcher.notify(path)
    watcher.parse_ahead(key)
    wait_for_ahead()
    drop(issued, "u.xlsx", second)
    watcher.notify(path)
    make_due(watcher, path)
    assert watcher.step(key) == 1
    assert server == [first, second]
    assert set(statuses(issued)) == {("0803010104", "electricity")}


def test_a_file_still_being_written_is_not_parsed_ahead(issued: Cli, watched: Any, server: list[bytes]) -> None:
    """Half a workbook (no zip end record yet) is not handed to the parser."""
    _folder, watcher, key = watched
    data = ticked(issued, "0803010103")
    path = drop(issued, "u.xlsx", data[: len(data) // 2])
    watcher.notify(path)
    watcher.parse_ahead(key)
    assert server == [] and not sandbox._AHEAD


def test_answers_kept_ahead_are_bounded(issued: Cli, server: list[bytes]) -> None:
    """However many files are parsed ahead and never taken, at most AHEAD_MAX answers are kept."""
    key = secret_key(issued.data)
    books = [ticked(issued, no) for no in ("0701020201", "0801020227", "0803010103", "0803010104", "0803010105")]
    for data in books:
        assert sandbox.parse_ahead(data, key)
        wait_for_ahead()
    assert not sandbox.parse_ahead(books[-1], key)  # already parsed ahead
    assert len(sandbox._AHEAD) == sandbox.AHEAD_MAX
    assert sandbox.parse_untrusted(books[-1], key).ok and len(server) == len(books)  # the kept answer


def test_a_file_rewritten_while_it_waits_is_parsed_ahead_once(issued: Cli, watched: Any,
                                                              server: list[bytes]) -> None:
    """A file that keeps changing (a copy that never ends, or someone rewriting it on purpose) costs one parse
    ahead while it waits, not one per version; its take parses the bytes it reads then."""
    _folder, watcher, key = watched
    first, second = ticked(issued, "0803010103"), ticked(issued, "0803010104")
    path = drop(issued, "u.xlsx", first)
    watcher.notify(path)
    watcher.parse_ahead(key)
    wait_for_ahead()
    for data in (second, first, second):
        drop(issued, "u.xlsx", data)
        watcher.notify(path)
        watcher.parse_ahead(key)
    assert server == [first]
    make_due(watcher, path)
    assert watcher.step(key) == 1
    assert server == [first, second]
    assert set(statuses(issued)) == {("0803010104", "electricity")}


def test_one_parse_ahead_at_a_time(issued: Cli, watched: Any, server: list[bytes],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While one waiting file is being parsed ahead no other is handed over: a take waits behind one parse at
    most. The next waiting file is parsed ahead once the first has answered."""
    _folder, watcher, key = watched
    release = threading.Event()
    counted = sandbox._SERVER.run

    def slow(key: bytes, data: bytes, fault: str, timeout: float) -> Any:
        release.wait(30)
        return counted(key, data, fault, timeout)

    monkeypatch.setattr(sandbox._SERVER, "run", slow)
    a = drop(issued, "a.xlsx", ticked(issued, "0803010103"))
    b = drop(issued, "b.xlsx", ticked(issued, "0803010104"))
    watcher.notify(a)
    watcher.notify(b)
    watcher.parse_ahead(key)
    watcher.parse_ahead(key)
    assert len(sandbox._AHEAD) == 1 and sandbox.ahead_busy()
    release.set()
    wait_for_ahead()
    deadline = time.monotonic() + 30
    while sandbox.ahead_busy() and time.monotonic() < deadline:  # cleared by the parse thread just after it answers
        time.sleep(0.01)
    watcher.parse_ahead(key)
    wait_for_ahead()
    assert len(server) == 2 and len(sandbox._AHEAD) == 2
