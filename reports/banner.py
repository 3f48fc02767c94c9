"""The banner a report gets when lixiao stops publishing it: a store whose check found damage is never reported
from, so the pages already built say that they are no longer current, and why."""

from __future__ import annotations

import html
import re
from pathlib import Path

from lixiao.core.storage.files import write_small

MARK = "lixiao-stale-banner"
_BODY = re.compile(r"<body[^>]*>", re.I)
_OLD = re.compile(rf'<div id="{MARK}".*?</div>\n?', re.S)


def mark_stale(reports: Path, since: str, problems: list[str]) -> list[Path]:
    """Put one red banner at the top of every page of ``reports`` (replacing an earlier one): not updated since
    ``since``, the first problems, what to do. The next report built from a sound store has none. Returns the
    pages marked."""
    shown = "".join(f"<li>{html.escape(line)}</li>" for line in problems[:3])
    banner = (f'<div id="{MARK}" style="background:#b71c1c;color:#fff;padding:12px 16px;font-size:15px">'
              f"<strong>本报表自 {html.escape(since)} 起停止更新：数据库校验未通过，报表、查询页和工作簿暂停发布。"
              f"</strong>请管理员运行 lixiao verify 查看，lixiao verify --repair 修复，或用备份恢复。<ul>{shown}</ul>"
              "</div>\n")
    marked = []
    for page in sorted(reports.glob("*.html")) if reports.is_dir() else []:
        try:
            text = _OLD.sub("", page.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        body = _BODY.search(text)
        if body is None:
            continue
        write_small(page, text[:body.end()] + "\n" + banner + text[body.end():], durable=False)
        marked.append(page)
    return marked
