"""Parse an untrusted returned workbook in a child process with memory, CPU and time limits.

Each file is parsed by a forked child that sets its limits, parses and answers one JSON document (compact
arrays, ``returned_to_wire``). A single-threaded process (``lixiao sync``) forks that child itself. A
multi-threaded one (``lixiao watch``, whose observer and mail threads make forking the process unsafe) uses a
persistent parser server (``python -m lixiao.workbooks.sandbox --serve``, started at start-up or on first use
and kept for the life of the process) that has the reader imported once and forks the child, so a parse
costs a fork, not a Python start (≈ 0.25 s). A file that crashes or exhausts the parser takes only that child
down; a server that dies is started again. Without a server (it cannot start, or ``LIXIAO_PARSER_SERVER=0``)
each file gets a fresh Python child: the key (hex, one line) and the bytes on stdin, one JSON document on
stdout. The daemon parses a waiting file ahead, one at a time (``parse_ahead``).
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lixiao.core.storage.faults import fault_action

MEMORY_LIMIT = 1536 * 1024 * 1024
CPU_SECONDS = 120
WALL_SECONDS = 180
AHEAD_MAX = 2  # answers of parses started ahead and not yet taken, kept at most


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """The child's answer: the parsed workbook (as a dict) or a reason code and message."""

    ok: bool
    code: str = ""
    message: str = ""
    returned: dict[str, Any] | None = None


def parse_timeout() -> float:
    """Seconds one parse may take before the child is killed ($LIXIAO_PARSE_TIMEOUT, default WALL_SECONDS)."""
    return float(os.environ.get("LIXIAO_PARSE_TIMEOUT", WALL_SECONDS))


def parse_untrusted(data: bytes, key: bytes, timeout: float | None = None) -> SandboxResult:
    """Run the checks and the reader in a limited child process (forked by the parser server); the answer of a
    parse of the same bytes started ahead (``parse_ahead``) when there is one."""
    if _AHEAD:
        with _AHEAD_LOCK:
            ahead = _AHEAD.pop(_ahead_token(data, key), None)
        if ahead is not None:
            return ahead.result()
    timeout = timeout or parse_timeout()
    if _SERVER.disabled or _SERVER.running() or threading.active_count() > 1:
        return _parsed_now(data, key, timeout)  # through the server (a fresh child when there is none)
    # a single-threaded process (lixiao sync) forks its own child: no Python start (≈ 0.25 s) to wait for
    from . import reader, returned, sniff  # noqa: F401 - imported before the fork, shared with the child

    return _verdict(_fork_parse(key.hex(), data, fault_action("parse"), timeout), timeout)


def parse_ahead(data: bytes, key: bytes) -> bool:
    """Start parsing ``data`` now, in a thread that hands it to the parser server, so that ``parse_untrusted`` of
    the same bytes (and key) later takes this answer instead of parsing again: the daemon parses a file while it
    waits for the file to settle. Only where the server runs (a multi-threaded process), and one at a time: a take
    waits behind at most one parse ahead. At most AHEAD_MAX answers are kept, the oldest dropped. False when
    nothing was started (no server, one already running, or these bytes already parsed ahead)."""
    if not _SERVER.running():
        return False
    token = _ahead_token(data, key)
    with _AHEAD_LOCK:
        if token in _AHEAD or _AHEAD_BUSY.is_set():
            return False
        _AHEAD_BUSY.set()
        while len(_AHEAD) >= AHEAD_MAX:
            _AHEAD.pop(next(iter(_AHEAD)))
        answer: Future[SandboxResult] = _AHEAD.setdefault(token, Future())

    def parse() -> None:
        try:
            answer.set_result(_parsed_now(data, key, parse_timeout()))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the answer
            answer.set_exception(exc)
        finally:
            _AHEAD_BUSY.clear()

    threading.Thread(target=parse, name="lixiao-parse-ahead", daemon=True).start()
    return True


def ahead_busy() -> bool:
    """True while a parse started ahead is running (parse_ahead starts no other one meanwhile)."""
    return _AHEAD_BUSY.is_set()


def _ahead_token(data: bytes, key: bytes) -> str:
    return hashlib.sha256(key + b"\0" + hashlib.sha256(data).digest()).hexdigest()


def _parsed_now(data: bytes, key: bytes, timeout: float) -> SandboxResult:
    """A parse through the server (a fresh child when there is none), as parse_untrusted does it."""
    ended = _SERVER.run(key, data, fault_action("parse"), timeout)
    return _verdict(ended if ended is not None else _one_shot(key, data, timeout), timeout)


def start_server() -> bool:
    """Start the parser server now (``lixiao watch`` at start-up, before its threads): every parse of a
    multi-threaded process goes through it. False when it cannot start."""
    return not _SERVER.disabled and _SERVER.start() is not None


@dataclass(frozen=True, slots=True)
class _Ended:
    """How one parse child ended: its exit code (negative: the signal), stdout, stderr, or a timeout."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


def _verdict(ended: _Ended, timeout: float) -> SandboxResult:
    if ended.timed_out:
        return SandboxResult(False, "timeout", f"解析超过 {int(timeout)} 秒仍未完成（文件可能是恶意构造的），已隔离")
    if ended.returncode != 0:
        tail = ended.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if ended.returncode < 0 or "MemoryError" in tail[0]:
            # the signal, or the memory limit; not the reader's own stderr (a Rust panic's note is no reason)
            why = f"信号 {-ended.returncode}" if ended.returncode < 0 else "内存超过上限"
            return SandboxResult(False, "parser_crashed", f"解析进程被终止（{why}），文件可能是恶意构造的，已隔离")
        return SandboxResult(False, "parser_failed", f"解析失败：{tail[0][:200]}")
    try:
        answer = json.loads(ended.stdout)
    except ValueError:
        return SandboxResult(False, "parser_failed", "解析进程没有给出有效结果")
    return SandboxResult(bool(answer["ok"]), answer.get("code", ""), answer.get("message", ""),
                         answer.get("returned"))


def _one_shot(key: bytes, data: bytes, timeout: float) -> _Ended:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lixiao.workbooks.sandbox"],
            input=key.hex().encode() + b"\n" + data,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    except subprocess.TimeoutExpired:
        return _Ended(-9, b"", b"", timed_out=True)
    return _Ended(done.returncode, done.stdout, done.stderr)


# -- the parser server ----------------------------------------------------------------------------------------
# A frame is a 4-byte big-endian length and that many bytes. Request: a JSON header {"key", "fault", "timeout"}
# frame, then the file's frame. Answer: a JSON header {"returncode", "timed_out"} frame, stdout and stderr frames.
_LENGTH = struct.Struct(">I")


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("parser server closed its pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: IO[bytes]) -> bytes:
    (size,) = _LENGTH.unpack(_read_exact(stream, _LENGTH.size))
    return _read_exact(stream, size)


class _Server:
    """The parent's handle on its parser server (one per process, started on first use, restarted if it dies)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._lock = threading.Lock()
        self.disabled = os.environ.get("LIXIAO_PARSER_SERVER") == "0"

    def running(self) -> bool:
        """True when this process's server is up."""
        return self._process is not None and self._process.poll() is None and self._owner == os.getpid()

    def start(self) -> subprocess.Popen[bytes] | None:
        """This process's server, started when it is not running."""
        if self.running():
            return self._process
        try:
            self._process = subprocess.Popen([sys.executable, "-m", "lixiao.workbooks.sandbox", "--serve"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
        except OSError:
            self._process = None
            return None
        self._owner = os.getpid()  # a forked child (the report) must not share its parent's server
        return self._process

    def _stop(self) -> None:
        if self._process is not None and self._owner == os.getpid():
            self._process.kill()
            self._process.wait()
        self._process = None

    def run(self, key: bytes, data: bytes, fault: str, timeout: float) -> _Ended | None:
        """One parse through the server; None when there is no server (the caller runs a one-shot child)."""
        if self.disabled:
            return None
        with self._lock:
            for _attempt in (1, 2):  # a server that died since the last file is started again once
                process = self.start()
                if process is None or process.stdin is None or process.stdout is None:
                    return None
                try:
                    header = json.dumps({"key": key.hex(), "fault": fault, "timeout": timeout}).encode()
                    _write_frame(process.stdin, header)
                    _write_frame(process.stdin, data)
                    process.stdin.flush()
                    ready, _, _ = select.select([process.stdout], [], [], timeout + 30)
                    if not ready:  # the server itself hangs: it cannot be trusted with the next file either
                        self._stop()
                        return _Ended(-9, b"", b"", timed_out=True)
                    answer = json.loads(_read_frame(process.stdout))
                    out, err = _read_frame(process.stdout), _read_frame(process.stdout)
                except (OSError, EOFError, ValueError):
                    self._stop()
                    continue
                return _Ended(int(answer["returncode"]), out, err, bool(answer["timed_out"]))
            return None


_SERVER = _Server()
_AHEAD: dict[str, Future[SandboxResult]] = {}  # parse_ahead's answers by _ahead_token, oldest first
_AHEAD_LOCK = threading.Lock()
_AHEAD_BUSY = threading.Event()  # a parse ahead is running


def serve() -> None:
    """Server entry point: import the reader once, then for each request fork a limited child to parse."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from . import reader, returned, sniff  # noqa: F401 - imported once here, shared by every forked child

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            header = json.loads(_read_frame(source))
            data = _read_frame(source)
        except EOFError:
            return
        ended = _fork_parse(str(header["key"]), data, str(header.get("fault", "")), float(header["timeout"]))
        _write_frame(sink, json.dumps({"returncode": ended.returncode, "timed_out": ended.timed_out}).encode())
        _write_frame(sink, ended.stdout)
        _write_frame(sink, ended.stderr)
        sink.flush()


def _fork_parse(key_hex: str, data: bytes, fault: str, timeout: float) -> _Ended:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limits, then the same work as a one-shot child
        try:
            gc.freeze()  # what the parent had is never finalized here (its store connection, its files)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.close(0)
            os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # nor the parent's files
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - the child's own stdout
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            _limit()
            _fault(fault)
            _parse(key_hex, data)
            sys.stdout.flush()
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001 - the child reports its end by its exit code
            try:
                sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
                sys.stderr.flush()
            finally:
                os._exit(1)
    os.close(out_w)
    os.close(err_w)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = time.monotonic() + timeout
    open_fds = [out_r, err_r]
    timed_out = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(open_fds, [], [], left)
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                chunks[fd].append(chunk)
            else:
                open_fds.remove(fd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(out_r)
    os.close(err_r)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return _Ended(code, b"".join(chunks[out_r]), b"".join(chunks[err_r]), timed_out)


def _limit() -> None:
    """MEMORY_LIMIT of address space beyond what the child was forked with (the server is small; a lixiao sync
    that forks its own child already maps its store and the cohort), CPU seconds, no core file."""
    try:
        with Path("/proc/self/statm").open("rb") as statm:
            mapped = int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        mapped = 0
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_LIMIT, mapped + MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _fault(action: str) -> None:
    """Fault injection for the tests: a parser that aborts, hangs, exhausts memory, or uses a file descriptor
    of its parent (fd:N, which must fail: the child closed it)."""
    if action.startswith("fd:"):
        os.fstat(int(action[3:]))
    if action == "abort":
        os.abort()
    if action == "hang":
        time.sleep(3600)
    if action == "memory":
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))


def _answer(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, ensure_ascii=False))
    sys.stdout.flush()


def _parse(key_hex: str, data: bytes) -> None:
    """Sniff, stream-check the parts, and read; one JSON answer on stdout."""
    from .reader import read_returned
    from .returned import ReadError, returned_to_wire
    from .sniff import check_parts, sniff

    verdict = sniff(data)
    if not verdict.ok:
        _answer(ok=False, code=verdict.code, message=verdict.message)
        return
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        verdict = check_parts(archive)
    if not verdict.ok:
        _answer(ok=False, code=verdict.code, message=verdict.message)
        return
    try:
        returned = read_returned(data, bytes.fromhex(key_hex))
    except ReadError as exc:
        _answer(ok=False, code="unreadable", message=str(exc))
        return
    _answer(ok=True, returned=returned_to_wire(returned))


def main() -> None:
    """One-shot child entry point: limits first, then the parse (``--serve``: the parser server)."""
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    _limit()
    raw = sys.stdin.buffer.read()
    _fault(fault_action("parse"))
    key_hex, _, data = raw.partition(b"\n")
    _parse(key_hex.decode(), data)


if __name__ == "__main__":
    main()
