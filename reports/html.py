"""The static HTML site: jinja2 with autoescape, user templates first and the bundled ones last."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from .data import ReportData, student_rows

READY_PAGE = "可领证名单.html"
REFUND_PAGE = "退费查询.html"


def environment(user_templates: Path | None = None) -> jinja2.Environment:
    """A jinja2 environment that escapes everything and prefers the coordinator's own templates."""
    bundled = jinja2.FileSystemLoader(str(resources.files("lixiao.templates")))
    loaders: list[jinja2.BaseLoader] = []
    if user_templates is not None and user_templates.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(user_templates)))
    loaders.append(bundled)
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _charts(data: ReportData) -> dict[str, Any]:
    return {
        "checkpoints": {
            "names": [cp.name for cp, _ in data.checkpoints],
            "values": [round(100 - cp.percent_unfinished, 1) for cp, _ in data.checkpoints],
        },
        "colleges": {
            "names": [c.name for c in data.colleges],
            "complete": [c.complete for c in data.colleges],
            "unfinished": [c.unfinished for c in data.colleges],
        },
        "history": {"days": [d for d, _, _ in data.history], "complete": [c for _, _, c in data.history]},
    }


def render_pages(data: ReportData, user_templates: Path | None = None) -> dict[str, bytes]:
    """Every file of the site (relative path → bytes), static assets included."""
    env = environment(user_templates)
    pages: dict[str, bytes] = {}
    pages["index.html"] = env.get_template("index.html").render(data=data, charts=_charts(data)).encode("utf-8")
    pages["students.html"] = env.get_template("students.html").render(data=data).encode("utf-8")
    pages[READY_PAGE] = env.get_template("certificates.html").render(data=data).encode("utf-8")
    if data.refund_step is not None:  # 统计查询 › 财务退费查询, only where the flow records refunds this session
        pages[REFUND_PAGE] = env.get_template("refunds.html").render(data=data).encode("utf-8")
    college_page = env.get_template("college.html")
    for number, college in enumerate(data.colleges, start=1):
        pages[f"college-{number}.html"] = college_page.render(
            data=data, college=college, classes=data.classes.get(college.name, [])).encode("utf-8")
    # </script> cannot appear: json.dumps escapes "/" only when asked, so escape "<" explicitly.
    payload = json.dumps({"students": student_rows(data), "flow": data.js_flow}, ensure_ascii=False,
                         separators=(",", ":")).replace("<", "\\u003c")
    pages["students.js"] = f"window.LIXIAO = {payload};\n".encode()
    static = resources.files("lixiao.templates").joinpath("static")
    for name in ("app.css", "echarts.min.js", "ECHARTS-LICENSE.txt"):
        pages[f"static/{name}"] = static.joinpath(name).read_bytes()
    return pages
