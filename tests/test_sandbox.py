"""The persistent parser server: the same verdicts as a one-shot child, restarted when it dies, never shared
with a forked child."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator

import pytest

from lixiao.workbooks import sandbox
from lixiao.workbooks.sandbox import parse_untrusted

from .conftest import Cli, key_of, outbox


@pytest.fixture
def single_threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a one-shot ``lixiao sync`` runs it: no parser server, no other thread (whatever threads an
    earlier test of this pytest process left behind)."""
    sandbox._SERVER._stop()
    monkeypatch.setattr(sandbox.threading, "active_count", lambda: 1)


@pytest.fixture
def server() -> Iterator[None]:
    """This process as ``lixiao watch`` runs: the parser server started, and another thread running."""
    assert sandbox.start_server()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    yield
    release.set()
    other.join()
    sandbox._SERVER._stop()


def test_own_fork_server_and_one_shot_child_give_the_same_answer(issued: Cli, monkeypatch: pytest.MonkeyPatch,
                                                                 single_threaded: None) -> None:
    """A workbook and a non-workbook get identical results from a child forked by this (single-threaded)
    process, through the server, and through a fresh Python child."""
    key = key_of(issued)
    good = outbox(issued, "dorm")[0].read_bytes()
    files = [good, b"PK\x03\x04 not really"]
    own_fork = [parse_untrusted(data, key) for data in files]
    assert not sandbox._SERVER.running()  # no server was started for them
    assert sandbox.start_server()
    through_server = [parse_untrusted(data, key) for data in files]
    sandbox._SERVER._stop()
    monkeypatch.setattr(sandbox._SERVER, "disabled", True)
    one_shot = [parse_untrusted(data, key) for data in files]
    assert own_fork == through_server == one_shot
    assert own_fork[0].ok and not own_fork[1].ok


def test_a_multi_threaded_process_parses_through_the_server(issued: Cli) -> None:
    """While another thread runs (the daemon's observer), a parse never forks this process: it starts the server
    and goes through it."""
    key = key_of(issued)
    data = outbox(issued, "dorm")[0].read_bytes()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert parse_untrusted(data, key).ok
        assert sandbox._SERVER.running()
    finally:
        release.set()
        other.join()
        sandbox._SERVER._stop()


def test_the_own_child_sees_none_of_the_parents_files(issued: Cli, monkeypatch: pytest.MonkeyPatch,
                                                      single_threaded: None) -> None:
    """The child a single-threaded process forks keeps only its answer pipes: the store and every other file the
    parent has open are closed before the file is parsed."""
    key = key_of(issued)
    data = outbox(issued, "dorm")[0].read_bytes()
    with (issued.data / "lixiao.toml").open("rb") as held:
        monkeypatch.setenv("LIXIAO_FAULT", f"parse:fd:{held.fileno()}")
        answer = parse_untrusted(data, key)
    assert (answer.ok, answer.code) == (False, "parser_failed")
    assert "Bad file descriptor" in answer.message


def test_a_server_that_died_is_started_again(issued: Cli, server: None) -> None:
    """Killing the server between two files costs nothing but a restart: the next parse still answers."""
    key = key_of(issued)
    data = outbox(issued, "dorm")[0].read_bytes()
    assert parse_untrusted(data, key).ok
    process = sandbox._SERVER._process
    assert process is not None and process.poll() is None
    process.kill()
    process.wait()
    assert parse_untrusted(data, key).ok
    assert sandbox._SERVER._process is not None and sandbox._SERVER._process.pid != process.pid


@pytest.mark.parametrize("through", ["server", "own_fork"])
def test_a_crashing_parse_does_not_take_the_parser_down(issued: Cli, monkeypatch: pytest.MonkeyPatch,
                                                       through: str) -> None:
    """A child that aborts is reported as parser_crashed; the same server (or this process) then parses the
    next file."""
    sandbox._SERVER._stop()
    if through == "server":
        assert sandbox.start_server()
    else:
        monkeypatch.setattr(sandbox.threading, "active_count", lambda: 1)
    key = key_of(issued)
    data = outbox(issued, "dorm")[0].read_bytes()
    try:
        assert parse_untrusted(data, key).ok
        server = sandbox._SERVER._process
        monkeypatch.setenv("LIXIAO_FAULT", "parse:abort")
        crashed = parse_untrusted(data, key)
        assert (crashed.ok, crashed.code) == (False, "parser_crashed")
        monkeypatch.delenv("LIXIAO_FAULT")
        assert parse_untrusted(data, key).ok
        assert sandbox._SERVER._process is server
    finally:
        sandbox._SERVER._stop()


def test_a_forked_child_starts_its_own_server(issued: Cli, server: None) -> None:
    """A process forked after the server started (the report child, a pool worker) never writes into its
    parent's pipes: it does not use its parent's server (single-threaded, it forks its own child)."""
    key = key_of(issued)
    data = outbox(issued, "dorm")[0].read_bytes()
    assert parse_untrusted(data, key).ok
    parent_server = sandbox._SERVER._process
    assert parent_server is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = not sandbox._SERVER.running() and parse_untrusted(data, key).ok
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert parse_untrusted(data, key).ok and sandbox._SERVER._process is parent_server


def test_the_compact_answer_rebuilds_what_the_reader_read(issued: Cli) -> None:
    """Rows, marks, identity, ticks and anomalies survive the child's compact arrays unchanged."""
    from lixiao.workbooks.reader import read_returned
    from lixiao.workbooks.returned import returned_from_wire, returned_to_wire

    key = key_of(issued)
    for office in ("dorm", "college", "special"):
        read = read_returned(outbox(issued, office)[0].read_bytes(), key)
        assert read.rows or office == "special"
        assert returned_from_wire(json.loads(json.dumps(returned_to_wire(read)))) == read
        through_child = parse_untrusted(outbox(issued, office)[0].read_bytes(), key)
        assert through_child.returned is not None and returned_from_wire(through_child.returned) == read


@pytest.mark.parametrize("damage", ["version", "row_width", "status", "token", "missing"])
def test_a_malformed_answer_is_a_parser_failure(issued: Cli, damage: str) -> None:
    """A child that answers something not of the wire's shape (a compromised parser) is refused with a reason,
    not a traceback."""
    from lixiao.workbooks.reader import read_returned
    from lixiao.workbooks.returned import returned_from_wire, returned_to_wire

    wire = returned_to_wire(read_returned(outbox(issued, "dorm")[0].read_bytes(), key_of(issued)))
    if damage == "version":
        wire["v"] = 1
    elif damage == "row_width":
        wire["rows"][0][2].append("extra")
    elif damage == "status":
        wire["rows"][0][3] = ["forged"] * len(wire["codes"])
    elif damage == "token":
        wire["token"] = ["not a payload", "", "", "valid", {}]
    else:
        del wire["rows"]
    with pytest.raises(ValueError, match="解析进程的结果格式不对"):
        returned_from_wire(wire)
