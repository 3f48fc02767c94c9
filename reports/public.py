"""The page safe to publish (学生离校查询): each student's 离校记录 encrypted so that only someone who types that
学号 and that student's 查询码 — a random code handed out on the counsellors' slips (core/storage/querycodes.py),
never derived from anything lixiao prints — can read it.

For each student: PBKDF2-HMAC-SHA256(学号 + "|" + the 查询码 as typed, normalised, the folder's page salt, N
iterations) gives 48 bytes: an AES-256-GCM key and a 16-byte lookup name. The page holds only {lookup: (nonce,
ciphertext)}, spread over 256 small files by the lookup name's first byte, with every record (JSON) padded
to the same size, in random order: without a right pair nothing — not a name, not a 学号, not how many steps a
student has left — can be read. The browser derives the same bytes with WebCrypto.

A salt per record would add nothing here: a guess already names one student (the 学号 is part of it), so it
can only ever be tested against that student's record. The salt is random per data folder (``.public-salt``,
so old pages cannot be precomputed against another school). Strength: 50 random bits per student; see
docs/security.md for the arithmetic.

The slow derivation runs once per student and code: derived keys are cached in ``.public-keys`` (mode 0600, beside
the store, which holds the codes in clear anyway) and reused while 学号, 查询码 and salt are unchanged — a rotated
code is derived afresh at the next build, and the old one opens nothing from then on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.manual.model import Flow
from lixiao.core.storage.chain import now
from lixiao.core.storage.files import write_atomically, write_small
from lixiao.core.storage.querycodes import QueryCodes, normalize_code
from lixiao.core.storage.store import Store

from .publicrecord import page_labels, page_steps, public_records

DEFAULT_ITERATIONS = 20_000
RECORD_BYTES = 256  # every plaintext (length, JSON) padded to the longest, rounded up to this
SHARDS = 256  # records spread over r/00.js … r/ff.js by lookup name: the page loads one small file
SALT_FILE, KEY_CACHE = ".public-salt", ".public-keys"
AAD = b"lixiao-public-v2"
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one encoder, not one per record


@dataclass(frozen=True, slots=True)
class PublicPage:
    """What was written: the page, its data file, how many records, how many keys had to be derived."""

    page: Path
    records: int
    derived: int


def derive(student_no: str, code: str, salt: bytes, iterations: int) -> tuple[bytes, str]:
    """(AES key, lookup name) for one student and 查询码 as typed: the browser's derivation, byte for byte."""
    secret = f"{student_no.strip()}|{normalize_code(code)}".encode()
    out = hashlib.pbkdf2_hmac("sha256", secret, salt, iterations, 48)
    return out[:32], out[32:].hex()


def _salt(root: Path) -> bytes:
    path = root / SALT_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        salt = secrets.token_bytes(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(salt.hex())
        return salt


def _cache(root: Path) -> dict[str, list[str]]:
    try:
        loaded = json.loads((root / KEY_CACHE).read_text("utf-8"))
        return loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(root: Path, cache: dict[str, list[str]]) -> None:
    path = root / KEY_CACHE
    write_atomically(path, json.dumps(cache).encode())
    path.chmod(0o600)


def _pack(record: dict[str, object]) -> bytes:
    """A record as its plaintext before padding: a 2-byte length and the JSON (UTF-8). Not compressed: a record
    is a few hundred bytes of indexes and codes, and deflating 30,000 of them was a fifth of a rebuild."""
    text = _JSON.encode(record).encode()
    return len(text).to_bytes(2, "big") + text


def _seal(key: bytes, plain: bytes, size: int) -> list[str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain += secrets.token_bytes(size - len(plain))  # every record the same length, whatever it holds
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plain, AAD)
    return [base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()]


def build_public_page(store: Store, flow: Flow, root: Path, out_dir: Path, render: Callable[[dict[str, object]], str],
                      iterations: int = DEFAULT_ITERATIONS,
                      progress: Callable[[int, int], None] | None = None) -> PublicPage:
    """Write ``out_dir``/离校查询.html and its encrypted records (``render`` turns the page's settings into HTML).
    Students without a 查询码 get one first (audited); the caller holds the writer lock."""
    with store.transaction():
        QueryCodes(store).issue_missing_codes()
    salt = _salt(root)
    cache = _cache(root)
    fresh: dict[str, list[str]] = {}
    packed: list[tuple[str, bytes, bytes]] = []  # lookup, key, plaintext
    layout = page_steps(flow)
    with store.snapshot():
        codes = QueryCodes(store).query_codes()
        records = list(public_records(store, flow, layout))
    derived = 0
    for index, (student, record) in enumerate(records):
        code = normalize_code(codes[student.student_no])
        tag = hashlib.sha256(f"{student.student_no}|{code}|{salt.hex()}|{iterations}".encode()).hexdigest()
        entry = cache.get(tag)
        if entry is None:
            key, lookup = derive(student.student_no, code, salt, iterations)
            entry, derived = [base64.b64encode(key).decode(), lookup], derived + 1
        else:
            key, lookup = base64.b64decode(entry[0]), entry[1]
        fresh[tag] = entry
        packed.append((lookup, key, _pack(record)))
        if progress and index % 200 == 0:
            progress(index, len(records))
    if fresh != cache:
        _save_cache(root, fresh)
    stamp = now()[:16].replace("T", " ")
    _write_records(out_dir, packed)
    data = {"v": 2, "salt": base64.b64encode(salt).decode(), "iterations": iterations, "aad": AAD.decode(),
            "steps": layout.steps, "labels": page_labels(), "asof": stamp}
    write_atomically(out_dir / "settings.js",
                     ("window.LIXIAO_PUBLIC = " + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                      + ";\n").encode())
    page = out_dir / "离校查询.html"
    write_atomically(page, render({"session": store.session().name, "count": len(packed), "asof": stamp}).encode())
    if progress:
        progress(len(records), len(records))
    return PublicPage(page, len(packed), derived)


def _write_records(out_dir: Path, packed: list[tuple[str, bytes, bytes]]) -> None:
    """Every record sealed, padded to one size, in random order, over the 256 shard files r/00.js … r/ff.js."""
    size = -(-max((len(p) for _, _, p in packed), default=1) // RECORD_BYTES) * RECORD_BYTES
    records = [(lookup, _seal(key, plain, size)) for lookup, key, plain in packed]
    random.SystemRandom().shuffle(records)
    shards: dict[str, dict[str, list[str]]] = {f"{n:02x}": {} for n in range(SHARDS)}
    for lookup, sealed in records:
        shards[lookup[:2]][lookup] = sealed
    (out_dir / "r").mkdir(parents=True, exist_ok=True)
    for prefix, shard in shards.items():  # temp + rename, not synced: the page is rebuilt from the store anyway
        write_small(out_dir / "r" / f"{prefix}.js", f'window.LIXIAO_SHARD("{prefix}", '
                    + json.dumps(shard, separators=(",", ":")) + ");\n", durable=False)
