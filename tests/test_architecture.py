"""The house's plan (issue 22): rooms inside core/ and sync/, the imports allowed between them, and the map in
docs/architecture.md that tells a newcomer where things live."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each room may import only the rooms after it in this order (and itself).
ORDER = ["sync.cli", "sync.demo", "sync.live", "sync.takeback", "sync", "reports", "workbooks",
         "core.clearance", "core.feeds", "core.storage", "core.manual", "core"]
ROOMS = {"core": ["manual", "storage", "feeds", "clearance"], "sync": ["cli", "takeback", "live", "demo"]}


def room_of(dotted: str) -> str | None:
    """The room of a lixiao module (``lixiao.sync.live.mail`` → ``sync.live``); None outside lixiao."""
    parts = dotted.split(".")
    if parts[0] != "lixiao" or len(parts) < 2 or parts[1] == "templates":
        return None
    if parts[1] in ROOMS and len(parts) >= 3 and parts[2] in ROOMS[parts[1]]:
        return f"{parts[1]}.{parts[2]}"
    return parts[1]


def imports_of(path: Path) -> set[str]:
    """Every lixiao module a source file imports, at the top or inside a function, relative ones resolved."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    module = ".".join(("lixiao", *rel))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("lixiao.")}


def upward(module: str, targets: set[str]) -> list[str]:
    """The targets a module may not import: rooms above its own in ORDER."""
    source = room_of(module)
    assert source in ORDER, module
    return sorted(t for t in targets if (room := room_of(t)) is not None and room != source
                  and ORDER.index(room) < ORDER.index(source))


def sources() -> list[Path]:
    return sorted(p for top in ("core", "sync", "workbooks", "reports") for p in (ROOT / top).rglob("*.py"))


def test_no_room_imports_a_room_above_it() -> None:
    """A module imports only its own room and the rooms below it (cli → demo → live → takeback → hall → reports
    → workbooks → clearance → feeds → storage → manual); an import up the order, or sideways, is named."""
    wrong = [f"{path.relative_to(ROOT)} imports {target}" for path in sources()
             for target in upward(".".join(("lixiao", *path.relative_to(ROOT).with_suffix("").parts)),
                                  imports_of(path))]
    assert wrong == []


def test_the_room_check_sees_a_wrong_import() -> None:
    """The check is not blind: the take-back importing the CLI or the live loop, the store importing the merge,
    are named; importing the hall or the manual is not."""
    targets = {"lixiao.sync.cli.main", "lixiao.sync.live.mail", "lixiao.sync.datafolder", "lixiao.core.manual.rules"}
    assert upward("lixiao.sync.takeback.pipeline", targets) == ["lixiao.sync.cli.main", "lixiao.sync.live.mail"]
    assert upward("lixiao.core.storage.store", {"lixiao.core.clearance.merge"}) == ["lixiao.core.clearance.merge"]
    assert upward("lixiao.sync.cli.main", targets) == []


def test_core_manual_imports_nothing_of_lixiao_outside_itself() -> None:
    """The manual's rules are pure: core/manual/ imports no other part of lixiao."""
    outside = {f"{p.name}: {t}" for p in (ROOT / "core" / "manual").rglob("*.py") for t in imports_of(p)
               if room_of(t) != "core.manual"}
    assert outside == set()


def test_each_room_opens_with_its_paragraph() -> None:
    """Each room's __init__.py opens with a paragraph saying what lives there and what it may import."""
    for top, rooms in ROOMS.items():
        assert sorted(p.name for p in (ROOT / top).iterdir() if (p / "__init__.py").exists()) == sorted(rooms)
        for room in rooms:
            doc = ast.get_docstring(ast.parse((ROOT / top / room / "__init__.py").read_text("utf-8")))
            assert doc is not None and len(doc) > 200, f"{top}/{room}"
            assert "import" in doc, f"{top}/{room}: the paragraph says what it may import"


def test_the_map_says_where_things_live() -> None:
    """docs/architecture.md's table answers with paths that exist and hold what they name (the merge rule, the
    mail fetch, the receipt, the lixiao set command …)."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    rows = re.findall(r"^\| (.+?) \| `([\w/.]+\.py)`(?: \(`(\w+)`\))? \|$", text, re.M)
    assert len(rows) >= 6
    named = {what for what, _, _ in rows}
    for needed in ("the merge rule", "the mail fetch", "the receipt", "the `lixiao set` command"):
        assert any(what.startswith(needed) for what in named), needed
    for _, path, symbol in rows:
        assert (ROOT / path).is_file(), path
        if symbol:
            assert re.search(rf"^def {symbol}\(", (ROOT / path).read_text("utf-8"), re.M), f"{path}: {symbol}"
