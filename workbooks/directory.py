"""The office directory template (离校点通讯录): one row per office, to fill in with addresses or share paths."""

from __future__ import annotations

from collections.abc import Sequence

from lixiao.core.storage.offices import DIRECTORY_HEADERS

from .roster import text_table

NOTES = (
    "每行一个离校点：“离校点”一列是工作簿上的名称，不要改动。",
    "电子邮箱：接收工作簿的邮箱，多个用分号（;）隔开；交回时用这些邮箱回复，系统就能认出是哪个离校点。",
    "共享文件夹：该离校点的共享文件夹路径（如 /mnt/离校共享/宿管中心）；相对路径相对于 lixiao.toml 的 "
    "[delivery] share_root。两列都空的离校点不投递，工作簿仍在 outbox/ 中。",
    "填好后运行：lixiao offices import 通讯录.xlsx",
)


def build_directory(rows: Sequence[Sequence[str]]) -> bytes:
    """An .xlsx directory: the headers, one text row per office, and a notes sheet."""
    return text_table("通讯录", DIRECTORY_HEADERS, (26, 12, 40, 40), rows, NOTES, 100)
