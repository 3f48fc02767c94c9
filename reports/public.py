"""The page safe to publish (学生离校查询): each student's 离校记录 encrypted so that only someone who types both
that 学号 and the last 6 characters of that 身份证号 can read it.

For each student: PBKDF2-HMAC-SHA256(学号 + "|" + last 6 of the ID, the folder's page salt, N iterations) gives
48 bytes: an AES-256-GCM key and a 16-byte lookup name. The page holds only {lookup: (nonce, ciphertext)},
spread over 256 small files by the lookup name's first byte, with every record (deflated JSON) padded to the
same size, in random order: without a right pair nothing — not a name, not a 学号, not how many steps a
student has left — can be read. The browser derives the same bytes with WebCrypto.

A salt per record would add nothing here: a guess already names one student (the 学号 is part of it), so it
can only ever be tested against that student's record. The salt is random per data folder (``.public-salt``,
so old pages cannot be precomputed against another school). Strength is bounded by the last 6 characters of an
ID: the day of birth, a 3-digit sequence and a check digit computed from the rest — about 14 bits; see
docs/security.md for the measured cost of guessing.

The slow derivation runs once per student: derived keys are cached in ``.public-keys`` (mode 0600, beside the
store, which holds the same data in clear anyway) and reused while 学号, ID and salt are unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.clearance.clearance import Clearance
from lixiao.core.manual.model import Flow, Status, Student
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.store import Store

DEFAULT_ITERATIONS = 20_000
RECORD_BYTES = 256  # every plaintext (length, deflated JSON) padded to the longest, rounded up to this
SHARDS = 256  # records spread over r/00.js … r/ff.js by lookup name: the page loads one small file
SALT_FILE, KEY_CACHE = ".public-salt", ".public-keys"
AAD = b"lixiao-public-v1"


@dataclass(frozen=True, slots=True)
class PublicPage:
    """What was written: the page, its data file, how many records, how many keys had to be derived."""

    page: Path
    records: int
    derived: int


def _secret_id_part(student: Student) -> str:
    return student.id_card.strip().upper()[-6:]


def derive(student_no: str, id_last6: str, salt: bytes, iterations: int) -> tuple[bytes, str]:
    """(AES key, lookup name) for one student: the browser's derivation, byte for byte."""
    secret = f"{student_no.strip()}|{id_last6.strip().upper()}".encode()
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


def record_of(clearance: Clearance, student: Student, index: dict[tuple[str, str], int]) -> dict[str, object]:
    """What a student sees: 基本信息 (no ID number) and the 离校记录 — each step as [its index in the page's step
    list, the manual's status label] — and what blocks which step."""
    document = clearance.record(student)
    steps = [[index[(s["checkpoint_name"], s["step_name"])],
              Status(s["status"]).label + ("（已解除限制）" if s["waived"] else "")]
             for s in document["steps"] if s["status"] != Status.NA.value]
    names = {s.code: s.name for s in clearance.flow.all_steps()}
    blocked = [f"{names.get(b['step'], b['step'])}：须先完成 {'、'.join(b['missing'])}" for b in document["blocked"]]
    return {"no": student.student_no, "name": student.name, "college": student.college, "class": student.class_name,
            "complete": document["complete"], "steps": steps, "blocked": blocked}


def _pack(record: dict[str, object]) -> bytes:
    """A record as its plaintext before padding: a 2-byte length and the raw-deflated JSON (the browser inflates
    it with DecompressionStream("deflate-raw"))."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = packer.compress(text) + packer.flush()
    return len(body).to_bytes(2, "big") + body


def _seal(key: bytes, plain: bytes, size: int) -> list[str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain += secrets.token_bytes(size - len(plain))  # every record the same length, whatever it holds
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plain, AAD)
    return [base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()]


def build_public_page(store: Store, flow: Flow, root: Path, out_dir: Path, render: Callable[[dict[str, object]], str],
                      iterations: int = DEFAULT_ITERATIONS,
                      progress: Callable[[int, int], None] | None = None) -> PublicPage:
    """Write ``out_dir``/离校查询.html and its encrypted records (``render`` turns the page's settings into HTML)."""
    clearance = Clearance(store, flow)
    salt = _salt(root)
    cache = _cache(root)
    fresh: dict[str, list[str]] = {}
    packed: list[tuple[str, bytes, bytes]] = []  # lookup, key, plaintext
    students = store.students()
    page_steps = [[cp.title_for(""), step.name] for cp in flow.checkpoints for step in cp.steps]
    step_index = {(name, step): i for i, (name, step) in enumerate(page_steps)}
    for cp in flow.checkpoints:  # per-college checkpoints show the college's name in a record
        if cp.per_college:
            for college in {s.college for s in students}:
                for step in cp.steps:
                    step_index[(cp.title_for(college), step.name)] = step_index[(cp.title_for(""), step.name)]
    derived = 0
    for index, student in enumerate(students):
        last6 = _secret_id_part(student)
        tag = hashlib.sha256(f"{student.student_no}|{last6}|{salt.hex()}|{iterations}".encode()).hexdigest()
        if tag in cache:
            key_b64, lookup = cache[tag]
            key = base64.b64decode(key_b64)
        else:
            key, lookup = derive(student.student_no, last6, salt, iterations)
            derived += 1
        fresh[tag] = [base64.b64encode(key).decode(), lookup]
        packed.append((lookup, key, _pack(record_of(clearance, student, step_index))))
        if progress and index % 200 == 0:
            progress(index, len(students))
    _save_cache(root, fresh)
    size = -(-max((len(p) for _, _, p in packed), default=1) // RECORD_BYTES) * RECORD_BYTES
    records = {lookup: _seal(key, plain, size) for lookup, key, plain in packed}
    shards: dict[str, dict[str, list[str]]] = {f"{n:02x}": {} for n in range(SHARDS)}
    shuffled = list(records.items())
    random.SystemRandom().shuffle(shuffled)
    for lookup, sealed in shuffled:
        shards[lookup[:2]][lookup] = sealed
    (out_dir / "r").mkdir(parents=True, exist_ok=True)
    for prefix, shard in shards.items():
        write_atomically(out_dir / "r" / f"{prefix}.js", (f'window.LIXIAO_SHARD("{prefix}", '
                         + json.dumps(shard, separators=(",", ":")) + ");\n").encode())
    data = {"v": 1, "salt": base64.b64encode(salt).decode(), "iterations": iterations, "aad": AAD.decode(),
            "steps": page_steps}
    write_atomically(out_dir / "settings.js",
                     ("window.LIXIAO_PUBLIC = " + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                      + ";\n").encode())
    page = out_dir / "离校查询.html"
    write_atomically(page, render({"session": store.session().name, "count": len(records)}).encode("utf-8"))
    if progress:
        progress(len(students), len(students))
    return PublicPage(page, len(records), derived)
