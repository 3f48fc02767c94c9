"""What a returned workbook's document properties say: lixiao's own (the token's signature and its payload
split over token1 … N), and which program last saved the file."""

from __future__ import annotations

import re
import zipfile

from defusedxml import ElementTree

from .layout import PROPERTY_PREFIX

_NS = {"cp": "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"}


def custom_properties(archive: zipfile.ZipFile) -> tuple[dict[str, str], str]:
    """lixiao's own custom document properties (without the prefix), and WPS's KSOProductBuildVer ("" if none)."""
    try:
        root = ElementTree.fromstring(archive.read("docProps/custom.xml"))
    except (KeyError, ElementTree.ParseError):
        return {}, ""
    props, wps = {}, ""
    for prop in root.findall("cp:property", _NS):
        name = prop.get("name", "")
        if name.startswith(PROPERTY_PREFIX):
            props[name[len(PROPERTY_PREFIX):]] = "".join(prop.itertext()).strip()
        elif name == "KSOProductBuildVer":
            wps = "".join(prop.itertext()).strip()[:40]
    return props, wps


_APP = re.compile(r"<(?:\w+:)?(Application|AppVersion)>([^<]{0,80})<")


def saved_by(archive: zipfile.ZipFile, wps_build: str) -> str:
    """Which program last saved the file, as far as the file tells: WPS by its KSOProductBuildVer (its app.xml
    often keeps another program's name), LibreOffice by its Application, Excel by an AppVersion other than the
    12.0000 that lixiao's own writer puts there; otherwise 未知 with what app.xml says."""
    if wps_build:
        return f"WPS {wps_build}"
    try:
        app = dict(_APP.findall(archive.read("docProps/app.xml")[:65536].decode("utf-8", "replace")))
    except KeyError:
        app = {}
    name, version = app.get("Application", "").strip(), app.get("AppVersion", "").strip()
    if name.startswith("LibreOffice"):
        return "LibreOffice " + name.partition("/")[2].partition("$")[0] if "/" in name else "LibreOffice"
    if name == "Microsoft Excel" and version and version != "12.0000":
        return f"Microsoft Excel {version}"
    shown = " ".join(filter(None, [name, version]))
    return f"未知（{shown}）" if shown else "未知"
