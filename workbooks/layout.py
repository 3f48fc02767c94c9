"""Where things are in an issued workbook (sheet names, header row, column titles), shared by the writer and
the reader — which must not import the writer (nor, through it, the store) into the sandboxed parser."""

from __future__ import annotations

MAIN_SHEET = "办理"
READY_SHEET = "可领证名单"  # certificate desks only: the first sheet, read by staff, never by lixiao
READY_HEADERS = ("学号", "姓名", "班级", "尚未领取")
WAIVER_SHEET = "解除限制"
GUIDE_SHEET = "说明"
META_SHEET = "_lixiao"
HEADER_ROW = 3  # 0-based: title, 经办人, hint, then the header
OPERATOR_CELL = (1, 1)  # B2
PREREQ_HEADER = "前置条件"
PROGRESS_HEADER = "离校进度"  # beside 前置条件: the whole 离校记录 in one cell (6/8 · 缺 …); shown, never read back
REMARK_HEADER = "备注"
COUNT_SUFFIX = "（已通过/应办）"  # batch sheets: "清理电费（已通过/应办）" beside the step's boxes
ROW_KEY_HEADER = "行校验"  # the last column of every ticking sheet: a signed key per row (see signing.row_key)
GROUP_HEADERS = {"class": "班级", "dorm": "宿舍", "college": "院系"}
# The special desk's columns (manual §3.9: 离校点, 离校点当前状态, 离校步骤, 步骤当前状态(初始), 限制状态); the
# reader finds the ones it reads (学号, 离校步骤, 解除限制, 理由, 凭证) by title, so older workbooks still read.
WAIVER_HEADERS = ("学号", "姓名", "院系", "班级", "离校点", "离校点当前状态", "离校步骤", "步骤当前状态(初始)",
                  "状态说明", "限制状态", "解除限制", "理由", "凭证")
PROPERTY_PREFIX = "lixiao_"


def text_width(text: str) -> int:
    """Display width of text in a cell, CJK characters counting double.

    (UTF-8 bytes + characters) / 2 is 1 for ASCII and 2 for CJK (3 bytes), computed in C: the
    per-character east_asian_width lookup cost seconds on a 30,000-student workbook.
    """
    return (len(text.encode("utf-8", "surrogatepass")) + len(text)) // 2


TOKEN_PART = 200  # characters of the signed payload per document property (Excel's dialog keeps 255)


def token_parts(payload_text: str) -> list[tuple[str, str]]:
    """The signed payload as document properties token1, token2 …: a suite that drops the hidden _lixiao sheet
    (WPS, other editors) still returns the workbook's identity, and its signature still checks it."""
    return [(f"token{i + 1}", payload_text[at:at + TOKEN_PART])
            for i, at in enumerate(range(0, len(payload_text), TOKEN_PART))]


def token_from_parts(properties: dict[str, str]) -> str:
    """The payload text joined again from token1, token2 … ("" when there is none)."""
    parts: list[str] = []
    while (part := properties.get(f"token{len(parts) + 1}")) is not None:
        parts.append(part)
    return "".join(parts)
