"""查询码单: one printable page per class for its counsellor — each student's 姓名, 学号 and 查询码 on a slip to cut
out and hand over, with how to open the page safe to publish. No 身份证号 or anything else about the student."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.manual.model import Student
from lixiao.core.storage.files import write_atomically
from lixiao.core.storage.querycodes import QueryCodes
from lixiao.core.storage.store import Store

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


class SlipsError(ValueError):
    """The slips cannot be written where asked, or no class matches."""


@dataclass(frozen=True, slots=True)
class Slip:
    """One student's slip."""

    name: str
    student_no: str
    code: str


@dataclass(frozen=True, slots=True)
class ClassSlips:
    """One class's page: where it was written and how many slips it holds."""

    college: str
    class_name: str
    path: Path
    count: int


def slip_file_name(college: str, class_name: str) -> str:
    """A file name for a class's page that any file system takes (查询码单-机电工程学院-22机设3班.html)."""
    return _UNSAFE.sub("_", f"查询码单-{college}-{class_name}").strip(". ") + ".html"


def _classes(students: list[Student], class_name: str | None,
             college: str | None) -> dict[tuple[str, str], list[Student]]:
    grouped: dict[tuple[str, str], list[Student]] = {}
    for student in students:
        if (class_name is None or student.class_name == class_name) and (college is None or student.college == college):
            grouped.setdefault((student.college, student.class_name), []).append(student)
    if not grouped:
        wanted = "、".join(w for w in (college, class_name) if w)
        raise SlipsError(f"学生名单中没有“{wanted}”的学生；请检查学院和班级名称（与学生名单一致）")
    return grouped


def build_slips(store: Store, out_dir: Path, render: Callable[[dict[str, object]], str], *,
                class_name: str | None = None, college: str | None = None, url: str = "",
                forbidden: Path | None = None) -> list[ClassSlips]:
    """Write one page per class (of ``class_name`` / ``college``, or all) into ``out_dir`` (mode 0600 files: they
    hold the codes). Students without a 查询码 get one first (audited). ``forbidden``: a folder the slips must not
    go into (reports/public/, which is published)."""
    if forbidden is not None and out_dir.resolve().is_relative_to(forbidden.resolve()):
        raise SlipsError(f"查询码单不能放在 {forbidden} 中（那里的文件会被发布）；请换一个只有你能访问的文件夹")
    grouped = _classes(store.students(), class_name, college)
    with store.transaction():
        QueryCodes(store).issue_missing_codes()
    codes = QueryCodes(store).query_codes(s.student_no for members in grouped.values() for s in members)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    session = store.session().name
    for (college_name, class_title), members in sorted(grouped.items()):
        slips = [Slip(s.name, s.student_no, codes[s.student_no]) for s in members]
        path = out_dir / slip_file_name(college_name, class_title)
        html = render({"session": session, "college": college_name, "class_name": class_title, "slips": slips,
                       "url": url})
        write_atomically(path, html.encode())
        path.chmod(0o600)
        written.append(ClassSlips(college_name, class_title, path, len(slips)))
    return written
