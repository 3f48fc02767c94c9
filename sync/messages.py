"""Chinese wording shared by the CLI, the pipeline and the daemon: outcomes, OS errors, usage errors."""

from __future__ import annotations

import errno

import click

OUTCOME_LABELS = {"merged": "已合并", "duplicate": "重复", "rejected": "已拒绝", "quarantined": "已隔离",
                  "deferred": "稍后处理", "held": "待协调人确认（尚未生效）"}

_ERRNO = {
    errno.ENOENT: "找不到该文件或文件夹", errno.EACCES: "没有权限", errno.EPERM: "没有权限",
    errno.ENAMETOOLONG: "文件名太长", errno.ENOSPC: "磁盘已满", errno.EDQUOT: "磁盘配额已满",
    errno.EFBIG: "文件太大", errno.EISDIR: "这是一个文件夹", errno.ENOTDIR: "路径中有一部分不是文件夹",
    errno.EROFS: "磁盘是只读的", errno.EIO: "磁盘读写错误", errno.EBUSY: "文件正被占用",
    errno.ELOOP: "符号链接层数太多", errno.EEXIST: "文件已存在", errno.EXDEV: "不能跨磁盘移动",
}


def os_error_text(exc: OSError) -> str:
    """An OS error in Chinese (the system's own text is English)."""
    return _ERRNO.get(exc.errno or -1, f"系统错误 {exc.errno}：{exc.strerror or exc}")


def strip_code(reason: str) -> str:
    """A reason without its machine code prefix ("misaligned：…" → "…"), for people to read."""
    code, sep, message = reason.partition("：")
    return message if sep and code.isascii() and code.replace("_", "").isalnum() else reason


def usage_error_text(exc: click.UsageError) -> str:
    """A click usage error in Chinese: the missing or wrong argument named, and where to read more."""
    command = " ".join(["lixiao", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
    hint = f"（见 {command} --help）"
    if isinstance(exc, click.MissingParameter):
        what = "选项" if exc.param is not None and exc.param.param_type_name == "option" else "参数"
        name = exc.param.get_error_hint(exc.ctx) if exc.param is not None and exc.ctx else ""
        return f"缺少{what} {name.strip(chr(39))}{hint}"
    if isinstance(exc, click.NoSuchOption):
        return f"没有选项 {exc.option_name}{hint}"
    if isinstance(exc, click.BadParameter):
        label = "参数"
        if exc.param is not None:
            label = (exc.param.get_error_hint(exc.ctx).strip("'") if exc.param.param_type_name == "option" and exc.ctx
                     else str(exc.param.human_readable_name))
        given = getattr(exc.param, "type", None)
        if isinstance(given, click.Choice):
            return f"{label} 的值无效，只能是 {'、'.join(str(c) for c in given.choices)}{hint}"
        if isinstance(given, click.FloatRange | click.IntRange):
            kind = "整数" if isinstance(given, click.IntRange) else "数"
            return f"{label} 应为 {given.min} 到 {given.max} 之间的{kind}{hint}"
        if isinstance(given, click.types.IntParamType | click.types.FloatParamType):
            return f"{label} 应为数字{hint}"
        if isinstance(given, click.Path):
            return f"{label} 不是可用的路径{hint}"
        return f"{label} 的值无效（{exc.format_message()}）{hint}"
    quoted = exc.format_message().split("'")
    if "Got unexpected extra argument" in exc.format_message():
        extra = exc.format_message().partition("(")[2].rpartition(")")[0]
        return f"多余的参数 {extra}{hint}"
    if "No such command" in exc.format_message() and len(quoted) > 1:
        return f"没有命令 {quoted[1]}（lixiao --help 列出所有命令）"
    return f"{exc.format_message()}{hint}"
