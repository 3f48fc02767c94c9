"""Parse an untrusted returned workbook in a child process with memory, CPU and time limits.

The parent sends the signing key (hex, one line) and the file's bytes on stdin; the child answers one
JSON document on stdout. A file that crashes or exhausts the parser takes only the child down.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from typing import Any

MEMORY_LIMIT = 1536 * 1024 * 1024
CPU_SECONDS = 120
WALL_SECONDS = 180


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
    """Run the checks and the reader in a limited child process."""
    timeout = timeout or parse_timeout()
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
        return SandboxResult(False, "timeout", f"解析超过 {int(timeout)} 秒仍未完成（文件可能是恶意构造的），已隔离")
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if done.returncode < 0 or "MemoryError" in tail[0]:
            why = f"信号 {-done.returncode} / {tail[0][:80]}"
            return SandboxResult(False, "parser_crashed", f"解析进程被终止（{why}），文件可能是恶意构造的，已隔离")
        return SandboxResult(False, "parser_failed", f"解析失败：{tail[0][:200]}")
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        return SandboxResult(False, "parser_failed", "解析进程没有给出有效结果")
    return SandboxResult(bool(answer["ok"]), answer.get("code", ""), answer.get("message", ""),
                         answer.get("returned"))


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _fault(action: str) -> None:
    """Fault injection for the tests: a parser that aborts, hangs or exhausts memory."""
    if action == "abort":
        os.abort()
    if action == "hang":
        import time

        time.sleep(3600)
    if action == "memory":
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))


def _answer(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, ensure_ascii=False))
    sys.stdout.flush()


def main() -> None:
    """Child entry point: limits first, then sniff, stream-check the parts, and read."""
    _limit()
    raw = sys.stdin.buffer.read()
    from lixiao.core.faults import fault_action

    _fault(fault_action("parse"))
    key_hex, _, data = raw.partition(b"\n")
    from .reader import read_returned
    from .returned import ReadError, returned_to_dict
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
        returned = read_returned(data, bytes.fromhex(key_hex.decode()))
    except ReadError as exc:
        _answer(ok=False, code="unreadable", message=str(exc))
        return
    _answer(ok=True, returned=returned_to_dict(returned))


if __name__ == "__main__":
    main()
