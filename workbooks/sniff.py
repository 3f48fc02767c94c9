"""Look at a returned file's bytes before any parser does: what it really is, and whether it is safe to open."""

from __future__ import annotations

import io
import itertools
import re
import zipfile
from dataclasses import dataclass

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_ENTRIES = 2_000
MAX_TOTAL_INFLATED = 400 * 1024 * 1024
MAX_ENTRY_INFLATED = 250 * 1024 * 1024
MAX_RATIO = 300  # inflated / compressed, for entries above 1 MiB inflated
MAX_ROWS = 200_000  # far beyond any cohort
MAX_COLUMN = 702  # ZZ
# Only references that may lie beyond MAX_COLUMN (three or more letters) or MAX_ROWS (six or more digits) are
# matched — a row's r="7" or a cell's r="E5" never is — so the scan runs in C from the literal r=" and Python
# looks at the rare candidates (whether the r is an attribute of its own, then the numbers). Letters of either
# case: python-calamine reads r="xfd1048576" too. A part with single quotes or a spaced "=" gets the general
# pattern, which starts at every r.
_FAR_REF = re.compile(rb'r\s*=\s*["\']([A-Za-z]{3,}|[A-Za-z]{0,2})([0-9]*)["\']')
_FAR_SHAPE = re.compile(rb'r="(?:[A-Za-z]{3,}[0-9]*|[A-Za-z]{0,2}[0-9]{6,})"')
_FAR_SHAPE_ANY = re.compile(rb'r\s*=\s*["\'](?:[A-Za-z]{3,}[0-9]*|[A-Za-z]{0,2}[0-9]{6,})["\']')
_TAG_NAME = re.compile(rb"<(?:\w+:)?(\w+)")
_TEXT_ELEMENTS = frozenset({b"t", b"f", b"v", b"oddHeader", b"oddFooter", b"evenHeader", b"evenFooter",
                            b"firstHeader", b"firstFooter"})
_DIMENSION = re.compile(rb'dimension\s[^>]*?ref="[A-Z]{1,3}[0-9]{1,7}:([A-Z]{1,3})([0-9]{1,8})"')
_DTD = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
SPACE = frozenset(b" \t\r\n")  # the bytes XML separates attributes with


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a file is: ``ok`` (a plausible .xlsx), or a reason code with a Chinese message."""

    code: str
    message: str = ""
    retry: bool = False  # may still be arriving (empty, truncated): try again later

    @property
    def ok(self) -> bool:
        """True when the file may be handed to the parser."""
        return self.code == "ok"


OK = Verdict("ok")


def column_number(letters: bytes) -> int:
    """The one-based number of a column's letters (A → 1, ZZ → 702)."""
    number = 0
    for ch in letters:
        number = number * 26 + ch - 64
    return number


def sniff(data: bytes) -> Verdict:
    """Classify a returned file from its bytes and zip directory only (no XML is parsed)."""
    if not data:
        return Verdict("empty", "文件是空的（可能还在复制中）；如果一直为空，请重新保存后交回", retry=True)
    if data.startswith(OLE_MAGIC):
        if "EncryptionInfo".encode("utf-16-le") in data[:65536] or b"E\x00n\x00c\x00r\x00y\x00p\x00t" in data:
            return Verdict("encrypted", "工作簿设置了打开密码；请在 Excel 中取消密码（文件→信息→保护工作簿）后重新交回")
        return Verdict("xls", "这是旧版 .xls 文件；请在 Excel 中“另存为” Excel 工作簿（.xlsx）后交回")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<table" in head:
        return Verdict("html", "这是网页（HTML/XML）文件，只是扩展名改成了 .xlsx；请用 Excel 打开工作簿后另存为 .xlsx")
    if not data.startswith(ZIP_MAGIC):
        if b"\x00" not in data[:4096] and (b"," in data[:4096] or b"\t" in data[:4096]):
            return Verdict("csv", "这是 CSV 文本文件，不是工作簿；请交回系统发给您的 .xlsx 文件")
        return Verdict("not_xlsx", "不是 .xlsx 工作簿（文件内容无法识别）")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return Verdict("truncated", "文件不完整（可能还在复制中，或传输时损坏）；请重新复制或重新保存", retry=True)
    with archive:
        return _check_archive(archive, len(data))


def _check_archive(archive: zipfile.ZipFile, size: int) -> Verdict:
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        return Verdict("too_many_entries", f"压缩包内有 {len(infos)} 个条目，不是正常的工作簿，已拒绝")
    names = {i.filename for i in infos}
    if len(names) != len(infos):
        return Verdict("duplicate_entries", "压缩包内有重名条目，不是正常的工作簿，已拒绝")
    if any(n.lower().endswith("vbaproject.bin") for n in names):
        return Verdict("macros", "工作簿含有宏；请另存为不含宏的 Excel 工作簿（.xlsx）后交回")
    if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
        return Verdict("not_xlsx", "压缩包不是 Excel 工作簿（缺少 xl/workbook.xml）")
    total = 0
    spans = []
    for info in infos:
        total += info.file_size
        if info.file_size > MAX_ENTRY_INFLATED or total > MAX_TOTAL_INFLATED:
            return Verdict("too_large", "工作簿解压后过大（可能是压缩炸弹），已拒绝")
        if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(1, info.compress_size):
            return Verdict("zip_bomb", "工作簿的压缩比异常（可能是压缩炸弹），已拒绝")
        if info.flag_bits & 0x1:
            return Verdict("encrypted", "工作簿内容被加密；请取消密码后重新交回")
        spans.append((info.header_offset, info.header_offset + 30 + len(info.filename.encode()) + info.compress_size))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            return Verdict("overlapping_entries", "压缩包条目相互重叠（可能是恶意构造的文件），已拒绝")
    if spans and spans[-1][1] > size:
        return Verdict("truncated", "文件不完整（可能还在复制中）", retry=True)
    return OK


def _far_reference(xml: bytes) -> str:
    """The first cell or row reference (r="…") beyond MAX_COLUMN or MAX_ROWS, or ""."""
    shape = _FAR_SHAPE_ANY if b"'" in xml or b" =" in xml or b"= " in xml else _FAR_SHAPE
    for candidate in shape.finditer(xml):
        start = candidate.start()
        if start == 0 or xml[start - 1] not in SPACE or _in_text(xml, start):
            continue  # the end of another attribute's name (header="…", error="…"), or text such as a <t>'s
        match = _FAR_REF.match(xml, start)
        if match is None:
            continue
        letters, row = match.group(1).upper(), match.group(2)
        if (row and int(row) > MAX_ROWS) or (letters and column_number(letters) > MAX_COLUMN):
            return f"在 {letters.decode()}{int(row) if row else ''} 有内容" if letters else f"的第 {int(row)} 行有内容"
    return ""


def _in_text(xml: bytes, start: int) -> bool:
    """True when ``start`` lies in the text of an element that holds text (a <t>, <f>, <v>, a header), not in a
    start tag's attributes (a ">" inside an attribute value does not end the tag here)."""
    tag = xml.rfind(b"<", 0, start)
    name = _TAG_NAME.match(xml, tag) if tag >= 0 else None
    return name is not None and name.group(1) in _TEXT_ELEMENTS and xml.find(b">", tag, start) != -1


def check_parts(archive: zipfile.ZipFile, chunk: int = 1 << 20) -> Verdict:
    """Stream every XML part once: refuse DTDs (XML bombs, XXE) and cells far beyond any real sheet."""
    for info in archive.infolist():
        name = info.filename
        if not name.endswith((".xml", ".rels", ".vml")):
            continue
        is_sheet = name.startswith("xl/worksheets/")
        tail = b""
        with archive.open(info) as stream:
            while True:
                block = stream.read(chunk)
                if not block:
                    break
                window = tail + block
                if b"<!" in window and _DTD.search(window):
                    return Verdict("xml_dtd", "工作簿含有 XML 实体声明（可能是 XML 炸弹），已拒绝")
                if is_sheet:
                    for letters, row in _DIMENSION.findall(window):
                        if int(row) > MAX_ROWS or column_number(letters) > MAX_COLUMN:
                            return Verdict("lying_dimension", f"工作表 {name} 声称的范围到 {letters.decode()}"
                                           f"{int(row)}，远超正常范围（可能是恶意构造的文件），已拒绝")
                    far = _far_reference(window)
                    if far:
                        return Verdict("far_cell", f"工作表 {name} {far}，远超正常范围，已拒绝")
                tail = window[-256:]
    return OK
