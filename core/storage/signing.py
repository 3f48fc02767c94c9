"""The workbook token: canonical JSON signed with HMAC-SHA256 using the data folder's key."""

from __future__ import annotations

import hashlib
import hmac
import json

TOKEN_VERSION = 1
ROW_KEY_LENGTH = 8


def canonical(data: object) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8 kept) so that equal data hashes equally."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def digest(data: object) -> str:
    """SHA-256 of the canonical JSON of ``data``."""
    return hashlib.sha256(canonical(data).encode("utf-8")).hexdigest()


def digest_text(text: str) -> str:
    """SHA-256 of the canonical form of a JSON text (what ``digest`` gave the data it was written from)."""
    return digest(json.loads(text))


def sign(payload_text: str, key: bytes) -> str:
    """HMAC-SHA256 of the payload text, hex."""
    return hmac.new(key, payload_text.encode("utf-8"), hashlib.sha256).hexdigest()


def row_secret(key: bytes, workbook_id: str) -> bytes:
    """The per-workbook key for row keys, derived from the folder's key (the workbook builder never sees the
    folder's key itself)."""
    return hmac.new(key, f"row-key|{workbook_id}".encode(), hashlib.sha256).digest()


def row_key(secret: bytes, ident: str) -> str:
    """The short signed key of one issued row (a student, a batch group, a special-desk item).

    Written into the row's 行校验 cell at issue; a returned row whose key is not the key of the 学号 (or group)
    now standing in it was moved apart from its other cells (a sort or paste over some columns only).
    """
    return hmac.digest(secret, ident.encode("utf-8"), "sha256").hex()[:ROW_KEY_LENGTH]  # one C call per row


def verify(payload_text: str, signature: str, key: bytes) -> bool:
    """True when ``signature`` is this key's signature of exactly this payload text."""
    return hmac.compare_digest(sign(payload_text, key), signature.strip().lower())
