"""The audit chain's hash: the text an event's hash is taken over (``chain_text``, ``audit_hash``), and the hashes
of a long chain checked beside its replay in a second process, so that `lixiao verify` (and the daemon's periodic
check) uses both cores: the replay rebuilds the state while the helper hashes every event.

The helper (``python -m lixiao.core.storage.chainhash STORE UPTO``) reads the events up to seq UPTO through its own
connection (query_only) and answers one JSON document: how many events it hashed and the seqs whose stored hash is
not the hash of their content. Events up to UPTO never change (the audit table refuses updates and deletes); a
helper that fails, is killed or answers anything else is ignored and the replay hashes the events itself.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from json.encoder import encode_basestring
from pathlib import Path

_DUMPS = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False), one encoder
BESIDE_FROM = 100_000  # events: a shorter chain is hashed by the replay itself (a helper's start costs ≈ 0.1 s)
BESIDE_SHARE = 0.9  # of the chain (by seq) the helper hashes: the replay hashes the rest while it rebuilds the state
# An audit event's fields in chain order (Event.fields()); its hash is taken over the previous hash and these.
AUDIT_FIELDS = ("at", "kind", "student_no", "step", "old", "new", "decision", "source", "source_hash", "operator",
                "detail")


def chain_text(items: tuple[str, ...] | list[str]) -> str:
    """json.dumps(list(items), ensure_ascii=False): for text items (all of them, unless a store was edited) each
    item's JSON string joined directly, the same text at half the cost."""
    try:
        return "[" + ", ".join(map(encode_basestring, items)) + "]"
    except TypeError:
        return _DUMPS(list(items))


def audit_hash(prev_hash: str, fields: tuple[str, ...]) -> str:
    """The hash that chains one audit event (its fields in chain order, Event.fields) to the previous one."""
    return hashlib.sha256(chain_text((prev_hash, *fields)).encode("utf-8")).hexdigest()


def bad_hashes(path: Path, upto: int) -> tuple[int, list[int]]:
    """(events hashed, seqs whose stored hash is not their content's) of the chain up to seq ``upto``."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA query_only = 1")
        sha256, bad, done = hashlib.sha256, [], 0
        query = f"SELECT seq, prev_hash, {', '.join(AUDIT_FIELDS)}, hash FROM audit WHERE seq <= ? ORDER BY seq"
        for seq, *hashed, digest in conn.execute(query, [upto]):
            done += 1
            if sha256(chain_text(hashed).encode("utf-8")).hexdigest() != digest:
                bad.append(seq)
        return done, bad
    finally:
        conn.close()


def start(path: Path, upto: int) -> subprocess.Popen[bytes] | None:
    """The helper hashing the chain up to ``upto``, started; None when it cannot start."""
    try:
        return subprocess.Popen([sys.executable, "-m", "lixiao.core.storage.chainhash", str(path), str(upto)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def finish(helper: subprocess.Popen[bytes] | None, events: int) -> list[int] | None:
    """The seqs the helper found with a wrong hash, once it has hashed exactly ``events`` events; None when there
    is no such answer (the caller hashes them itself)."""
    if helper is None:
        return None
    try:
        out, _ = helper.communicate(timeout=60 + events / 20_000)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.communicate()
        return None
    try:
        answer = json.loads(out)
        done, bad = answer["hashed"], answer["bad"]
    except (ValueError, TypeError, KeyError):
        return None
    if helper.returncode != 0 or done != events or not all(type(seq) is int for seq in bad):
        return None
    return list(bad)


def main() -> None:
    """The helper: STORE UPTO on the command line, one JSON answer on stdout."""
    done, bad = bad_hashes(Path(sys.argv[1]), int(sys.argv[2]))
    sys.stdout.write(json.dumps({"hashed": done, "bad": bad}))


if __name__ == "__main__":
    main()
