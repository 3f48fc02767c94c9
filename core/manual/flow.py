"""Flows (离校流程) as TOML: loading, validation with clear errors, and the shipped presets."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from .model import APPLIES_FLAGS, Checkpoint, Flow, Step

PRESETS = ("undergrad", "graduate")
BATCH_MODES = {"class": "按班级", "dorm": "按宿舍", "college": "按学院"}
FEEDS = ("library", "finance", "loans:national", "loans:local")
KINDS = ("office", "alternate", "waiver")
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_FLOW_KEYS = {"name", "checkpoint"}
_CHECKPOINT_KEYS = {
    "code", "name", "per_college", "display", "batch", "requires", "kind", "in_record", "lifts",
    "step",
}
_STEP_KEYS = {"code", "name", "applies_to", "source", "feed", "required", "disabled_from", "refund"}


class FlowError(ValueError):
    """A flow file is malformed; the message says where and how to fix it."""


def load_preset(name: str) -> Flow:
    """Load one of the shipped presets (``undergrad`` or ``graduate``)."""
    if name not in PRESETS:
        raise FlowError(f"没有名为“{name}”的预置流程，可选：{'、'.join(PRESETS)}")
    text = resources.files("lixiao.core.manual.presets").joinpath(f"{name}.toml").read_text("utf-8")
    return parse_flow(text, origin=f"预置流程 {name}")


def preset_text(name: str) -> str:
    """The TOML source of a shipped preset, to copy into a data folder."""
    if name not in PRESETS:
        raise FlowError(f"没有名为“{name}”的预置流程，可选：{'、'.join(PRESETS)}")
    return resources.files("lixiao.core.manual.presets").joinpath(f"{name}.toml").read_text("utf-8")


def load_flow_file(path: Path) -> Flow:
    """Load and validate a flow TOML file."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise FlowError(f"无法读取流程文件 {path}：{exc.strerror}") from None
    except UnicodeDecodeError:
        raise FlowError(f"流程文件 {path} 不是 UTF-8 文本，请用 UTF-8 保存") from None
    return parse_flow(text, origin=str(path))


def parse_flow(text: str, origin: str = "流程文件") -> Flow:
    """Parse and validate flow TOML text into a Flow."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FlowError(f"{origin}：TOML 语法错误（{exc}）") from None
    return build_flow(data, origin)


def _fail(origin: str, message: str) -> FlowError:
    return FlowError(f"{origin}：{message}")


def _unknown_keys(table: Mapping[str, object], allowed: set[str], where: str, origin: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise _fail(origin, f"{where}有未知的键 {', '.join(extra)}（可用：{', '.join(sorted(allowed))}）")


def _str(table: Mapping[str, object], key: str, where: str, origin: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise _fail(origin, f"{where}缺少文本键 {key}")
    return value


def _str_list(table: Mapping[str, object], key: str, where: str, origin: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(origin, f"{where}的 {key} 应为文本列表")
    return tuple(value)


def _bool(table: Mapping[str, object], key: str, default: bool, where: str, origin: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise _fail(origin, f"{where}的 {key} 应为 true 或 false")
    return value


def _build_step(raw: object, checkpoint: str, where_cp: str, origin: str) -> Step:
    if not isinstance(raw, dict):
        raise _fail(origin, f"{where_cp}的 step 应为表（[[checkpoint.step]]）")
    code = _str(raw, "code", f"{where_cp}的步骤", origin)
    where = f"步骤 {code} "
    _unknown_keys(raw, _STEP_KEYS, where, origin)
    if not _CODE.match(code):
        raise _fail(origin, f"{where}的代码须为小写 ASCII 字母开头，只含 a-z 0-9 _")
    applies = _str(raw, "applies_to", where, origin, "all")
    flag = applies.removeprefix("!")
    if applies != "all" and flag not in APPLIES_FLAGS:
        raise _fail(origin,
                    f"{where}的 applies_to “{applies}”无效，可用 all、{', '.join(APPLIES_FLAGS)}（可加 ! 取反）")
    source = _str(raw, "source", where, origin, "workbook")
    feed = _str(raw, "feed", where, origin, "")
    if source not in ("workbook", "feed"):
        raise _fail(origin, f"{where}的 source 只能是 workbook 或 feed")
    if feed and feed not in FEEDS:
        raise _fail(origin, f"{where}的 feed “{feed}”无效，可用 {', '.join(FEEDS)}")
    if source == "feed" and not feed:
        raise _fail(origin, f"{where}的 source 为 feed，但没有指定 feed")
    disabled = raw.get("disabled_from")
    if disabled is not None and (not isinstance(disabled, int) or isinstance(disabled, bool)):
        raise _fail(origin, f"{where}的 disabled_from 应为年份整数，如 2017")
    return Step(
        code=code,
        name=_str(raw, "name", where, origin),
        checkpoint=checkpoint,
        applies_to=applies,
        source=source,
        feed=feed,
        required=_bool(raw, "required", True, where, origin),
        disabled_from=disabled,
        refund=_bool(raw, "refund", False, where, origin),
    )


def _build_checkpoint(raw: object, origin: str) -> Checkpoint:
    if not isinstance(raw, dict):
        raise _fail(origin, "checkpoint 应为表（[[checkpoint]]）")
    code = _str(raw, "code", "离校点", origin)
    where = f"离校点 {code} "
    _unknown_keys(raw, _CHECKPOINT_KEYS, where, origin)
    if not _CODE.match(code):
        raise _fail(origin, f"{where}的代码须为小写 ASCII 字母开头，只含 a-z 0-9 _")
    batch = _str_list(raw, "batch", where, origin)
    for mode in batch:
        if mode not in BATCH_MODES:
            raise _fail(origin, f"{where}的批量方式 “{mode}”不允许，可用 {', '.join(BATCH_MODES)}")
    kind = _str(raw, "kind", where, origin, "office")
    if kind not in KINDS:
        raise _fail(origin, f"{where}的 kind “{kind}”无效，可用 {', '.join(KINDS)}")
    raw_steps = raw.get("step", [])
    if not isinstance(raw_steps, list):
        raise _fail(origin, f"{where}的 step 应为 [[checkpoint.step]] 表数组")
    steps = tuple(_build_step(s, code, where, origin) for s in raw_steps)
    if kind == "waiver" and steps:
        raise _fail(origin, f"{where}是解除限制点（kind = \"waiver\"），不能有自己的步骤")
    if kind != "waiver" and not steps:
        raise _fail(origin, f"{where}没有任何步骤")
    per_college = _bool(raw, "per_college", False, where, origin)
    display = _str(raw, "display", where, origin, "")
    if per_college and "{college}" not in display:
        raise _fail(origin, f"{where}按学院设立（per_college），display 须含 {{college}}，如 \"{{college}}离校点\"")
    return Checkpoint(
        code=code,
        name=_str(raw, "name", where, origin),
        steps=steps,
        per_college=per_college,
        display=display,
        batch=batch,
        requires=_str_list(raw, "requires", where, origin),
        kind=kind,
        in_record=_bool(raw, "in_record", kind == "office", where, origin),
        lifts=_str_list(raw, "lifts", where, origin),
    )


def build_flow(data: Mapping[str, object], origin: str = "流程文件") -> Flow:
    """Validate parsed TOML data: codes unique, prerequisites known and acyclic."""
    _unknown_keys(data, _FLOW_KEYS, "流程", origin)
    name = _str(data, "name", "流程", origin)
    raw_cps = data.get("checkpoint")
    if not isinstance(raw_cps, list) or not raw_cps:
        raise _fail(origin, "没有任何离校点（[[checkpoint]]）")
    checkpoints = tuple(_build_checkpoint(raw, origin) for raw in raw_cps)
    seen: set[str] = set()
    steps: dict[str, Step] = {}
    for cp in checkpoints:
        for code in (cp.code, *(s.code for s in cp.steps)):
            if code in seen:
                raise _fail(origin, f"代码 {code} 重复（离校点和步骤的代码必须全局唯一）")
            seen.add(code)
        steps.update({s.code: s for s in cp.steps})
    refunds = [s.code for s in steps.values() if s.refund]
    if len(refunds) > 1:
        raise _fail(origin, f"只能有一个退费步骤（refund = true），现在有 {'、'.join(refunds)}")
    cp_codes = {cp.code for cp in checkpoints}
    for cp in checkpoints:
        for req in cp.requires:
            if req not in cp_codes and req not in steps:
                raise _fail(origin, f"离校点 {cp.code} 的前置条件 {req} 不存在")
        for lifted in cp.lifts:
            if lifted not in steps:
                raise _fail(origin, f"离校点 {cp.code} 可解除限制的步骤 {lifted} 不存在")
    flow = Flow(name=name, checkpoints=checkpoints, steps=steps)
    cycle = _find_cycle(flow)
    if cycle:
        raise _fail(origin, f"前置条件成环：{' → '.join(cycle)}")
    return flow


def _find_cycle(flow: Flow) -> list[str]:
    """A cycle of checkpoint codes in the prerequisite graph, or [] if none."""
    edges = {
        cp.code: [r if r not in flow.steps else flow.steps[r].checkpoint for r in cp.requires]
        for cp in flow.checkpoints
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for code in edges:
        if code not in state:
            found = visit(code)
            if found:
                return found
    return []


def flow_to_dict(flow: Flow, year: int) -> dict[str, object]:
    """The ``flow show --json`` document of the contract."""
    return {
        "name": flow.name,
        "checkpoints": [
            {
                "code": cp.code,
                "name": cp.name,
                "kind": cp.kind,
                "per_college": cp.per_college,
                "batch": list(cp.batch),
                "requires": list(cp.requires),
                "lifts": list(cp.lifts),
                "steps": [
                    {
                        "code": s.code,
                        "name": s.name,
                        "applies_to": s.applies_to,
                        "source": "workbook" if s.source == "workbook" else f"feed:{s.feed}",
                        "feed": s.feed,
                        "required": s.required,
                        "enabled": s.enabled(year),
                        "disabled_from": s.disabled_from,
                        "refund": s.refund,
                    }
                    for s in cp.steps
                ],
            }
            for cp in flow.checkpoints
        ],
    }
