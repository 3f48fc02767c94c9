"""lixiao codes: the students' 查询码 for the page safe to publish — slips per class for the counsellors, and a
new code for one student."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from lixiao.sync.datafolder import DataFolderError

from .base import console, examples, open_data, operator_name


@click.group(epilog=examples("  lixiao codes slips 查询码单/\n  lixiao codes rotate 2201010203"))
def codes() -> None:
    """学生查询码：打印各班查询码单、为某学生更换查询码。"""


@codes.command("slips", epilog=examples(
    "  lixiao codes slips 查询码单/\n  lixiao codes slips 查询码单/ --class 22机设3班\n"
    "  lixiao codes slips 查询码单/ --college 机电工程学院 --url https://stu.example.edu.cn/lx/离校查询.html"))
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--class", "class_name", help="只生成这个班级（与学生名单中的班级一致）")
@click.option("--college", help="只生成这个学院的各班")
@click.option("--url", default="", help="查询页的网址，印在每张查询码单上")
@click.pass_context
def codes_slips(ctx: click.Context, directory: Path, class_name: str | None, college: str | None, url: str) -> None:
    """生成各班查询码单（每班一个可打印的网页：姓名、学号、查询码和查询方法），交辅导员剪开发给学生。
    还没有查询码的学生先生成查询码（记入审计）。学生名单没有学生邮箱列，查询码单不通过邮件发送。"""
    from lixiao.reports.html import environment
    from lixiao.reports.slips import SlipsError, build_slips

    with open_data(ctx, write=True) as folder:
        template = environment(folder.root / "templates").get_template("slips.html")
        try:
            written = build_slips(folder.store, directory, lambda page: template.render(**page),
                                  class_name=class_name, college=college, url=url,
                                  forbidden=folder.root / "reports" / "public")
        except SlipsError as exc:
            raise DataFolderError(str(exc)) from None
    for page in written:
        console.print(f"{escape(page.college)} {escape(page.class_name)}：{page.count} 人 → {escape(str(page.path))}")
    console.print(f"已生成 {len(written)} 个班级的查询码单（只有你能读取）；打印后交各班辅导员，不要发布到网上")


@codes.command("rotate", epilog=examples("  lixiao codes rotate 2201010203 --operator 张老师"))
@click.argument("student")
@click.option("--operator", help="操作人（记入审计）")
@click.pass_context
def codes_rotate(ctx: click.Context, student: str, operator: str | None) -> None:
    """为一名学生更换查询码（遗失或泄露时）：新码只显示这一次，旧码在查询页重新生成后失效（已开启查询页时立即
    重新生成）。记入审计（不记录查询码本身）。"""
    from lixiao.core.storage.querycodes import QueryCodes
    from lixiao.sync.publishing import publish_public_page

    with open_data(ctx, write=True) as folder:
        who = folder.clearance.student(student)
        with folder.store.transaction():
            code = QueryCodes(folder.store).rotate_code(who.student_no, operator_name(operator))
        made = publish_public_page(folder)
    console.print(f"{escape(who.name)}（{who.student_no}）的新查询码：{code}")
    console.print("请只交给本人（此码不会再显示；再次遗失请重新更换）。"
                  + ("查询页已重新生成，旧码已失效" if made else
                     "本文件夹未开启查询页（lixiao report --public）；开启后旧码不能使用"))


COMMANDS = (codes,)
