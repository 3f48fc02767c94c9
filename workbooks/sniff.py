"""Look at a returned file's bytes before any parser does: what it really is, and whether it is safe to open."""

from __future__ import annotations

import html
import io
import itertools
import re
import zipfile
from collections.abc import Iterator
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
        inside = [n for n in names if n.lower().endswith((".xlsx", ".xls", ".csv"))]
        if inside:  # a .zip of returns: say what to do with it
            return Verdict("not_xlsx", f"这是一个压缩包，里面有 {len(inside)} 个文件（如“{inside[0][:40]}”），"
                           "不是工作簿本身；请解压后把里面的 .xlsx 工作簿逐个交回")
        return Verdict("not_xlsx", "这是一个压缩包，不是 Excel 工作簿；请交回系统发给您的 .xlsx 文件本身（不要压缩）")
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


# A start tag, its attribute values quoted (a ">" may stand inside one); what may follow a far element.
_ATTRS = rb'(?:\s+[^\s=>/<]+\s*=\s*(?:"[^"]*"|\'[^\']*\'))*\s*'
_START_TAG = re.compile(rb"<(?:\w+:)?(\w+)(" + _ATTRS + rb")(/?)>")
_ATTR = re.compile(rb'\s+([^\s=>/<]+)\s*=\s*(?:"[^"]*"|\'[^\']*\')')
_CELL_END = re.compile(rb"\s*</(?:\w+:)?c\s*>")
_ROW_END = re.compile(rb"\s*</(?:\w+:)?row\s*>")
_EMPTY_CELLS = re.compile(rb"(?:\s+|<(?:\w+:)?c" + _ATTRS + rb"(?:/>|>\s*</(?:\w+:)?c\s*>))*")
_NEXT_ELEMENT = re.compile(rb"\s*<(?:\w+:)?(?:c|row)[\s/>]")
_PLACED = (b'<c r="', b"</row>", b'<row r="', b"</sheetData>")
NEAR_END = 4096  # an element that ends this close to a window's end may go on in the next one
MAX_PENDING = 4 * 1024 * 1024  # a far element longer than this is not formatting
MAX_FAR_EMPTY = 16 * 16_384  # far elements holding only formatting, per sheet (a row styled to XFD has 15,682)


def _holds_content(xml: bytes, tag: int, final: bool) -> bool | None:
    """Whether the far row or cell whose start tag begins at ``tag`` holds anything but formatting: a value, a
    formula, inline text, any child other than an empty cell — or is followed by a row or cell without its own
    r, which a reader places after it. Any other element with a far r counts as content. None: it may go on past
    the end of a window that is not the last."""
    more = None if not final else True
    start = _START_TAG.match(xml, tag)
    if start is None:
        return more if len(xml) - tag < NEAR_END else True
    name = start.group(1)
    if name not in (b"c", b"row"):
        return True
    end = start.end()
    if not start.group(3):  # not <c …/> or <row …/>: only empty cells may come before its end tag
        if name == b"row":
            end = _EMPTY_CELLS.match(xml, end).end()  # type: ignore[union-attr]  # "*" always matches
        closing = (_CELL_END if name == b"c" else _ROW_END).match(xml, end)
        if closing is None:
            return more if len(xml) - end < NEAR_END else True
        end = closing.end()
    return _unplaced_follower(xml, end, more)


def _unplaced_follower(xml: bytes, end: int, more: bool | None) -> bool | None:
    """Whether a row or cell without an r attribute follows at ``end`` (a reader would place it further out)."""
    if xml.startswith(_PLACED, end):
        return False  # the next cell (its own r is checked where it stands), or the end of the row or the sheet
    follower = _NEXT_ELEMENT.match(xml, end)
    if follower is None:
        return more if len(xml) - end < NEAR_END and not xml[end:].strip(b" \t\r\n").startswith(b"</") else False
    tag = _START_TAG.match(xml, xml.index(b"<", end))
    if tag is None:
        return more if len(xml) - end < NEAR_END else True
    return b"r" not in {attr.group(1) for attr in _ATTR.finditer(tag.group(2))}


def _far_references(xml: bytes) -> Iterator[tuple[int, bytes, int]]:
    """Each cell or row reference (r="…") beyond MAX_COLUMN or MAX_ROWS: (where the tag it stands in starts, or
    -1, its letters in upper case — empty for a row's —, its row number or 0). The tag is
    looked for back to the candidate before only, so that a tag full of far r's costs no more than its length."""
    shape = _FAR_SHAPE_ANY if b"'" in xml or b" =" in xml or b"= " in xml else _FAR_SHAPE
    tag, past_tag, last = -1, False, 0
    for candidate in shape.finditer(xml):
        start = candidate.start()
        if start == 0 or xml[start - 1] not in SPACE:
            continue  # the end of another attribute's name (header="…", error="…")
        newer = xml.rfind(b"<", last, start)
        if newer >= 0:
            tag, past_tag = newer, xml.find(b">", newer, start) != -1
        elif tag >= 0 and not past_tag:
            past_tag = xml.find(b">", last, start) != -1
        last = start
        if past_tag and _holds_text(xml, tag):
            continue  # text such as a <t>'s (a ">" inside an attribute value does not end the tag here)
        match = _FAR_REF.match(xml, start)
        if match is None:
            continue
        letters, row = match.group(1).upper(), int(match.group(2) or 0)
        if row > MAX_ROWS or (letters and column_number(letters) > MAX_COLUMN):
            yield tag, letters, row


def _far_reference(xml: bytes) -> str:
    """The first cell or row reference (r="…") beyond MAX_COLUMN or MAX_ROWS, or ""."""
    for _tag, letters, row in _far_references(xml):
        return _content_at(letters, row)
    return ""


def _content_at(letters: bytes, row: int) -> str:
    return f"在 {letters.decode()}{row or ''} 有内容" if letters else f"的第 {row} 行有内容"


def _holds_text(xml: bytes, tag: int) -> bool:
    """True when the element whose tag starts at ``tag`` holds text (a <t>, <f>, <v>, a header)."""
    name = _TAG_NAME.match(xml, tag)
    return name is not None and name.group(1) in _TEXT_ELEMENTS


def check_parts(archive: zipfile.ZipFile, chunk: int = 1 << 20) -> Verdict:
    """Stream every XML part once: refuse DTDs (XML bombs, XXE), and far cells that hold anything but formatting
    (or that contradict the sheet's own dimension)."""
    titles = sheet_titles(archive)
    for info in archive.infolist():
        if info.filename.endswith((".xml", ".rels", ".vml")):
            verdict = _check_part(archive, info, chunk, titles)
            if not verdict.ok:
                return verdict
    return OK


_ATTRIBUTE = {name: re.compile(rb'\b' + name + rb'="([^"]{1,200})"') for name in (b"name", b"r:id", b"Id", b"Target")}


def _elements(data: bytes, tag: bytes) -> list[dict[bytes, bytes]]:
    """The attributes of every <tag …> element, found tag by tag (linear in the part: no pattern spans tags)."""
    found = []
    opening = re.compile(rb"<(?:\w+:)?" + tag + rb"\b")
    for piece in data.split(b">"):
        element = piece[piece.rfind(b"<"):]
        if opening.match(element):
            found.append({name: m.group(1) for name, pattern in _ATTRIBUTE.items() if (m := pattern.search(element))})
    return found


def sheet_titles(archive: zipfile.ZipFile) -> dict[str, str]:
    """The title staff see for each worksheet part ("xl/worksheets/sheet5.xml" → "草稿"), read before any parser
    from the first MiB of the workbook part and its relationships (what cannot be read is simply not named)."""
    def head(name: str) -> bytes:
        try:
            with archive.open(name) as stream:
                return stream.read(1 << 20)
        except (KeyError, OSError, zipfile.BadZipFile):
            return b""
    targets = {e[b"Id"]: e[b"Target"] for e in _elements(head("xl/_rels/workbook.xml.rels"), b"Relationship")
               if b"Id" in e and b"Target" in e}
    titles = {}
    for sheet in _elements(head("xl/workbook.xml"), b"sheet"):
        target = targets.get(sheet.get(b"r:id", b""), b"").decode("utf-8", "replace").lstrip("/")
        if target and b"name" in sheet:
            titles[target if target.startswith("xl/") else f"xl/{target}"] = \
                html.unescape(sheet[b"name"].decode("utf-8", "replace"))
    return titles


def _check_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, chunk: int, titles: dict[str, str]) -> Verdict:
    """One part, a window at a time; each window starts with the last bytes of the one before (or with a far
    element that the window before cut off)."""
    title = titles.get(info.filename)
    scan = _SheetScan(f"“{title}”" if title else f" {info.filename} ") if info.filename.startswith("xl/worksheets/") \
        else None
    tail = b""
    with archive.open(info) as stream:
        block = stream.read(chunk)
        while block:
            following = stream.read(chunk)
            window = tail + block
            if b"<!" in window and _DTD.search(window):
                return Verdict("xml_dtd", "工作簿含有 XML 实体声明（可能是 XML 炸弹），已拒绝")
            keep = max(0, len(window) - 256)
            if scan is not None:  # the next window starts at a tag, so that each far r is seen with its tag
                keep = max(window.rfind(b"<", max(0, keep - NEAR_END), keep), 0) or keep
                verdict, pending = scan.feed(window, final=not following)
                if not verdict.ok:
                    return verdict
                keep = min(keep, len(window) if pending is None else pending)
            tail, block = window[keep:], following
    return OK if scan is None else scan.finish()


class _SheetScan:
    """What one worksheet part says about its far extent: the dimension it declares and the far rows and cells
    it holds. A far element that holds only formatting (a styled empty cell to XFD, LibreOffice's empty last row
    after a row is deleted) is read when the dimension covers it; a far dimension is read when such elements
    reach it. Far content (a value, a formula, inline text) is refused wherever it stands: python-calamine
    aborts the process on it (on empty far elements and on the dimension it spends nothing)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dimension: tuple[str, int, int] | None = None  # its last cell's reference, row and column
        self.rows = 0  # the furthest far row and column that an element reaches
        self.columns = 0
        self.seen = 0  # far elements that hold only formatting (one seen twice, in two windows, counts twice)

    def feed(self, window: bytes, final: bool) -> tuple[Verdict, int | None]:
        """A refusal (or OK), and where a far element cut off at the window's end starts (or None)."""
        if self.dimension is None:
            found = _DIMENSION.search(window)
            if found:
                letters, row = found.groups()
                self.dimension = (f"{letters.decode()}{int(row)}", int(row), column_number(letters))
        judged = -1
        for tag, letters, row in _far_references(window):
            held = True if tag < 0 else False if tag == judged else _holds_content(window, tag, final)
            if held is None and len(window) - tag <= MAX_PENDING:
                return OK, tag
            judged = tag  # another far r in the same tag: the same element, judged once
            if held is not False:
                far = _content_at(letters, row)
                return Verdict("far_cell", f"工作表{self.name} {far}，远超正常范围，已拒绝；请删除那里的内容"
                               "（或移到表格里靠前的位置）后重新保存，再交回"), None
            column = column_number(letters) if letters else 0
            if self.dimension is None or row > self.dimension[1] or column > self.dimension[2]:
                return self._outside(letters, row), None
            self.rows, self.columns = max(self.rows, row), max(self.columns, column)
            self.seen += 1
            if self.seen > MAX_FAR_EMPTY:
                return Verdict("far_cell", f"工作表{self.name} 有超过 {MAX_FAR_EMPTY} 个只有格式、没有值的远处单元格，"
                               "读取代价过大，已拒绝；请在数据区以外选中多余的行和列，删除后重新保存，再交回"), None
        return OK, None

    def _outside(self, letters: bytes, row: int) -> Verdict:
        where = f"单元格 {letters.decode()}{row or ''}" if letters else f"第 {row} 行"
        declared = f"A1:{self.dimension[0]}" if self.dimension else "没有声明"
        return Verdict("far_cell", f"工作表{self.name} 的{where}只有格式、没有值，却在工作表自己声明的范围"
                       f"（{declared}）之外：{_CONTRADICTS}")

    def finish(self) -> Verdict:
        """At the part's end: a far dimension that no row or cell reaches is refused."""
        if self.dimension is None:
            return OK
        last, rows, columns = self.dimension
        if (rows > MAX_ROWS and self.rows < rows) or (columns > MAX_COLUMN and self.columns < columns):
            return Verdict("lying_dimension", f"工作表{self.name} 声明的范围到 {last}，表中却没有任何行或单元格"
                           f"到达那里：{_CONTRADICTS}")
        return OK


_CONTRADICTS = ("文件前后矛盾，不像 Excel、WPS 或 LibreOffice 保存的文件，已拒绝；请用 Excel、WPS 或 LibreOffice "
                "打开后重新保存，再交回")
