"""The page safe to publish, kept current: whether this folder publishes it, and the one call that rebuilds it.

``lixiao report --public`` opts a folder in (``.public-page`` beside store.db: {"publish": true, "iterations": N});
from then on every report refresh — ``lixiao report``, ``lixiao sync``, the daemon after a batch of merges —
rebuilds reports/public/ too, so the page is never older than the reports. ``--no-public`` opts out. A folder
that built the page before this setting existed (it has ``.public-salt``) counts as opted in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lixiao.core.storage.files import write_small

from .datafolder import DataFolder

if TYPE_CHECKING:
    from lixiao.reports.public import PublicPage

PUBLIC_SETTING = ".public-page"
_LEGACY = ".public-salt"  # reports/public.SALT_FILE: written by every page build since the first
DEFAULT_ITERATIONS = 20_000  # reports/public.DEFAULT_ITERATIONS (not imported: `lixiao --help` loads no report)


@dataclass(frozen=True, slots=True)
class PublicSetting:
    """Whether the folder publishes the page, and with how many key-derivation iterations."""

    publish: bool
    iterations: int


def public_setting(root: Path) -> PublicSetting:
    """The folder's choice (not published unless ``lixiao report --public`` ran)."""
    try:
        raw = json.loads((root / PUBLIC_SETTING).read_text("utf-8"))
        return PublicSetting(bool(raw["publish"]), int(raw["iterations"]))
    except (OSError, ValueError, KeyError, TypeError):
        return PublicSetting((root / _LEGACY).exists(), DEFAULT_ITERATIONS)


def choose_public(root: Path, publish: bool, iterations: int | None = None) -> PublicSetting:
    """Opt the folder in or out (keeping its iterations unless new ones are given)."""
    setting = PublicSetting(publish, iterations or public_setting(root).iterations)
    write_small(root / PUBLIC_SETTING, json.dumps({"publish": setting.publish, "iterations": setting.iterations}),
                durable=True)
    return setting


def publish_public_page(folder: DataFolder,
                        progress: Callable[[int, int], None] | None = None) -> PublicPage | None:
    """Rebuild reports/public/ when the folder publishes it; None when it does not. The caller holds the writer
    lock. Every publication goes through here (a guard against publishing a damaged store wraps this call)."""
    setting = public_setting(folder.root)
    if not setting.publish:
        return None
    from lixiao.reports.html import environment
    from lixiao.reports.public import build_public_page

    template = environment(folder.root / "templates").get_template("public.html")
    return build_public_page(folder.store, folder.flow, folder.root, folder.root / "reports" / "public",
                             lambda settings: template.render(**settings), setting.iterations, progress)
