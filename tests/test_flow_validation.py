"""Flow files are validated on load with a clear Chinese message naming the problem."""

from __future__ import annotations

import pytest

from lixiao.core.manual.flow import FlowError, load_preset, parse_flow

BASE = """
name = "测试流程"
[[checkpoint]]
code = "a"
name = "甲离校点"
{a_extra}
[[checkpoint.step]]
code = "a1"
name = "甲一"
{step_extra}
[[checkpoint]]
code = "b"
name = "乙离校点"
{b_extra}
[[checkpoint.step]]
code = "b1"
name = "乙一"
"""


def flow_text(a_extra: str = "", b_extra: str = "", step_extra: str = "") -> str:
    """A two-checkpoint flow with extra lines in checkpoint a, its step, or checkpoint b."""
    return BASE.format(a_extra=a_extra, b_extra=b_extra, step_extra=step_extra)


def test_valid_flow_loads() -> None:
    """A minimal flow with a prerequisite loads and indexes its steps."""
    flow = parse_flow(flow_text(b_extra='requires = ["a"]'))
    assert [cp.code for cp in flow.checkpoints] == ["a", "b"]
    assert flow.steps["b1"].checkpoint == "b"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"b_extra": 'requires = ["zzz"]'}, "离校点 b 的前置条件 zzz 不存在"),
        ({"a_extra": 'requires = ["b"]', "b_extra": 'requires = ["a1"]'}, "前置条件成环：a → b → a"),
        ({"a_extra": 'requires = ["a"]'}, "前置条件成环：a → a"),
        ({"b_extra": 'batch = ["week"]'}, "离校点 b 的批量方式 “week”不允许"),
        ({"step_extra": 'applies_to = "rich"'}, "步骤 a1 的 applies_to “rich”无效"),
        ({"step_extra": 'source = "feed"'}, "步骤 a1 的 source 为 feed，但没有指定 feed"),
        ({"step_extra": 'colour = "red"'}, "步骤 a1 有未知的键 colour"),
        ({"a_extra": "per_college = true"}, "display 须含 {college}"),
        ({"step_extra": 'disabled_from = "2017"'}, "disabled_from 应为年份整数"),
    ],
)
def test_invalid_flow_is_refused_with_reason(kwargs: dict[str, str], message: str) -> None:
    """Each malformed flow names the checkpoint or step at fault."""
    with pytest.raises(FlowError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        parse_flow(flow_text(**kwargs), origin="f.toml")


def test_duplicate_code_is_refused() -> None:
    """Step and checkpoint codes are unique across the whole flow."""
    text = flow_text().replace('code = "b1"', 'code = "a1"')
    with pytest.raises(FlowError, match="代码 a1 重复"):
        parse_flow(text)


def test_checkpoint_code_may_not_collide_with_a_step_code() -> None:
    """A step named like a checkpoint would make `requires` ambiguous."""
    with pytest.raises(FlowError, match="代码 b 重复"):
        parse_flow(flow_text().replace('code = "a1"', 'code = "b"'))


def test_toml_syntax_error_is_one_line() -> None:
    """Broken TOML says so, with the file name."""
    with pytest.raises(FlowError, match=r"f\.toml：TOML 语法错误"):
        parse_flow("name = [", origin="f.toml")


def test_waiver_desk_may_not_have_steps() -> None:
    """A waiver checkpoint only lifts restrictions; it holds no steps of its own."""
    with pytest.raises(FlowError, match="解除限制点"):
        parse_flow(flow_text(a_extra='kind = "waiver"'))


def test_unknown_preset() -> None:
    """Asking for a preset that does not exist lists the ones that do."""
    with pytest.raises(FlowError, match="可选：undergrad、graduate"):
        load_preset("phd")
