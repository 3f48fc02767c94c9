"""The static HTML site: jinja2 with autoescape, user templates first and the bundled ones last."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from lixiao.core.clearance.refunds import REFUND_WORDS

from .data import ReportData, student_rows

READY_PAGE = "可领证名单.html"
REFUND_PAGE = "退费查询.html"


def environment(user_templates: Path | None = None) -> jinja2.Environment:
    """A jinja2 environment that escapes everything and prefers the coordinator's own templates. One per folder
    of user templates for the process: jinja2 then compiles each template once (the daemon regenerates reports
    after every batch; compiling was most of a small report) and still reloads a template edited meanwhile."""
    user = str(user_templates) if user_templates is not None and user_templates.is_dir() else ""
    return _environment(user)


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by every environment of the process, keyed (by jinja2) on each template's name
    and source checksum, so an edited template is compiled again."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self.compiled.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledTemplates()


@functools.lru_cache(maxsize=8)
def _environment(user_templates: str) -> jinja2.Environment:
    bundled = jinja2.FileSystemLoader(str(resources.files("lixiao.templates")))
    loaders: list[jinja2.BaseLoader] = []
    if user_templates:
        loaders.append(jinja2.FileSystemLoader(user_templates))
    loaders.append(bundled)
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True, bytecode_cache=_COMPILED,
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
        words = {status.value: word for status, word in REFUND_WORDS.items()}
        pages[REFUND_PAGE] = env.get_template("refunds.html").render(data=data, words=words).encode("utf-8")
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
