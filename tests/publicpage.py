"""The page safe to publish read the way a browser reads it (settings.js, one shard, PBKDF2, AES-GCM, JSON),
and the check that its published files hold nothing of a student in clear."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lixiao.core.storage.querycodes import normalize_code

# A token is a maximal run of the characters of hex and base64 (its "=" padding only at the end), or the same with
# hyphens (a grouped 查询码). Random published text is whole tokens of fixed lengths no clear value has — a nonce 16
# characters, a salt 24, a lookup name 32, a record hundreds — so a 学号 (10), a 身份证号 (18) or its tail (6), a
# 查询码 (10, or 12 grouped) is found only where it really stands in clear: never by chance.
_TOKEN = re.compile(r"[0-9A-Za-z+/]+=*")
_GROUPED = re.compile(r"[0-9A-Za-z+/\-]+=*")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")


def _settings(public: Path) -> dict[str, Any]:
    text = (public / "settings.js").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text[text.index("=") + 1:].strip().rstrip(";"))
    return loaded


def open_record(public: Path, student_no: str, code: str) -> dict[str, Any] | None:
    """The record that 学号 + 查询码 opens, or None (what the page shows as 没有查到)."""
    data = _settings(public)
    secret = f"{student_no.strip()}|{normalize_code(code)}".encode()
    out = hashlib.pbkdf2_hmac("sha256", secret, base64.b64decode(data["salt"]), data["iterations"], 48)
    lookup = out[32:].hex()
    body = (public / "r" / f"{lookup[:2]}.js").read_text("utf-8")
    entry = json.loads(body[body.index(",") + 1:body.rindex(")")]).get(lookup)
    if entry is None:
        return None
    try:
        plain = AESGCM(out[:32]).decrypt(base64.b64decode(entry[0]), base64.b64decode(entry[1]),
                                         data["aad"].encode())
    except InvalidTag:
        return None
    size = int.from_bytes(plain[:2], "big")
    record: dict[str, Any] = json.loads(plain[2:2 + size])
    return record


def shown_steps(public: Path, record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(desk, step, status label, note) of each step of a record, as the page words them."""
    data = _settings(public)
    rows = []
    for entry in record["steps"]:
        desk, step = data["steps"][entry[0]]
        label = data["labels"][entry[1]] + ("（已解除限制）" if len(entry) > 3 and entry[3] else "")
        rows.append((record["titles"].get(desk, desk), step, label, entry[2] if len(entry) > 2 else ""))
    return rows


def published_text(public: Path) -> str:
    """Every published file as one text, with JSON/JS escapes and HTML character references decoded."""
    text = "\n".join(p.read_text("utf-8") for p in sorted(public.rglob("*")) if p.is_file())
    return html.unescape(_ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text))


def clear_hits(public: Path, tokens: dict[str, str], phrases: dict[str, str]) -> list[str]:
    """What of ``tokens`` (学号, 身份证号 and its tail, 查询码: found only as whole tokens) and ``phrases`` (names,
    classes: Chinese, which hex and base64 cannot hold) stands in clear in the published files."""
    text = published_text(public)
    found = set(_TOKEN.findall(text)) | set(_GROUPED.findall(text))
    return ([f"{what}: {value}" for what, value in tokens.items() if value in found]
            + [f"{what}: {value}" for what, value in phrases.items() if value in text])
