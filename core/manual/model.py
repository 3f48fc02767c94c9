"""Plain, typed domain objects: students, checkpoints, steps, statuses and waivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """State of one student at one step; the Chinese label is the manual's."""

    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
    OPTIONAL = "optional"
    NA = "na"

    @property
    def label(self) -> str:
        """The manual's word for this status (离校记录)."""
        return STATUS_LABELS[self]

    @property
    def marked(self) -> str:
        """The status with the mark the manual shows beside it (✓ 已通过, ✗ 未通过, ○ 可办可不办, ↓ 未办理)."""
        return f"{STATUS_MARKS[self]} {STATUS_LABELS[self]}"


STATUS_LABELS: dict[Status, str] = {
    Status.PENDING: "未办理",
    Status.PASSED: "已通过",
    Status.FAILED: "未通过",
    Status.OPTIONAL: "可办可不办",
    Status.NA: "不适用",
}

# The manual's icons as characters (its legend: 已通过, 未通过, 可办可不办, 未办理).
STATUS_MARKS: dict[Status, str] = {Status.PASSED: "✓", Status.FAILED: "✗", Status.OPTIONAL: "○",
                                   Status.PENDING: "↓", Status.NA: "–"}

# The one status alphabet: the board, the per-student status lines in the store and the student page's
# data all use these characters.
STATUS_CODES: dict[Status, str] = {Status.PASSED: "p", Status.FAILED: "f", Status.OPTIONAL: "o",
                                   Status.PENDING: "n", Status.NA: "-"}

LEVELS = ("本科", "硕士", "博士")
SPLITS = ("college", "class", "dorm")  # how one checkpoint's workbooks may be split further (lixiao issue --split)

# Roster flag columns taking 是/否: the Chinese header and the attribute of Student it fills.
FLAG_COLUMNS: dict[str, str] = {
    "往届": "previous",
    "国家助学贷款": "national_loan",
    "生源地贷款": "local_loan",
    "借用交换机": "switch",
}
# 暂缓发证 names what is withheld (manual §3.2: 教务处 hands out the 学位证, the 毕业证, or both).
WITHHELD_COLUMN = "暂缓发证"
WITHHELD_WORDS: dict[tuple[bool, bool], str] = {  # (学位证 withheld, 毕业证 withheld) → the roster's word
    (False, False): "否", (True, False): "学位证", (False, True): "毕业证", (True, True): "两证"}
# The applicability flags, stored one column each (the two withheld certificates share one: schema.WITHHELD_CODES).
FLAGS = (*FLAG_COLUMNS.values(), "withheld_degree", "withheld_diploma")
# What a flow's applies_to may name: the flags, and ``withheld`` (either certificate: flows written before the
# roster named which one).
APPLIES_FLAGS = (*FLAGS, "withheld")


@dataclass(frozen=True, slots=True)
class Student:
    """One graduate of the session; 学号 is the key and always text."""

    student_no: str
    name: str
    gender: str = ""
    id_card: str = ""
    college: str = ""
    major: str = ""
    class_name: str = ""
    dorm: str = ""
    level: str = "本科"
    previous: bool = False
    national_loan: bool = False
    local_loan: bool = False
    switch: bool = False
    withheld_degree: bool = False  # 学位证 暂缓发放: collected at 教务处
    withheld_diploma: bool = False  # 毕业证 暂缓发放: collected at 教务处
    lenders: tuple[str, ...] = ()  # the national loan's lenders (10534 校本部, 12649 潇湘) where the roster names them

    @property
    def class_group(self) -> str:
        """The group a report lists the student under: the 班级, or — for graduates, whose rosters have none —
        培养层次 and 专业 (e.g. "硕士 机械工程")."""
        return self.class_name or f"{self.level} {self.major or '（未填专业）'}"

    @property
    def withheld(self) -> bool:
        """Either certificate withheld (暂缓发证 other than 否)."""
        return self.withheld_degree or self.withheld_diploma

    @property
    def withheld_word(self) -> str:
        """暂缓发证 as the roster writes it: 否, 学位证, 毕业证 or 两证."""
        return WITHHELD_WORDS[self.withheld_degree, self.withheld_diploma]

    def flag(self, name: str) -> bool:
        """The value of one applicability flag (e.g. ``national_loan``, ``withheld_degree``)."""
        if name not in APPLIES_FLAGS:
            raise KeyError(name)
        return bool(getattr(self, name))


@dataclass(frozen=True, slots=True)
class Step:
    """One 离校步骤 inside a checkpoint."""

    code: str
    name: str
    checkpoint: str
    applies_to: str = "all"  # "all", a flag name, or "!flag"
    source: str = "workbook"  # "workbook" or "feed"
    feed: str = ""  # "library", "finance", "loans:national", "loans:local"
    required: bool = True
    disabled_from: int | None = None  # session year from which the step is cancelled
    refund: bool = False  # 退费状态: listed by 财务退费查询 and 学生退费查询

    def enabled(self, year: int) -> bool:
        """True when the step is still in use for a session of this year."""
        return self.disabled_from is None or year < self.disabled_from


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One 离校点: an office and its steps, possibly one instance per college."""

    code: str
    name: str
    steps: tuple[Step, ...] = ()
    per_college: bool = False
    display: str = ""  # e.g. "{college}离校点" for per-college checkpoints
    batch: tuple[str, ...] = ()  # allowed batch sheets: class, dorm, college
    requires: tuple[str, ...] = ()  # checkpoint codes or step codes
    kind: str = "office"  # "office", "alternate" (教务处) or "waiver" (特殊离校点)
    in_record: bool = True  # shown in the student's 离校记录
    lifts: tuple[str, ...] = ()  # for kind "waiver": steps whose restriction it lifts

    def title_for(self, college: str) -> str:
        """The name this checkpoint has for a student of ``college``."""
        if self.per_college and self.display and college:
            return self.display.replace("{college}", college)
        return self.name


@dataclass(frozen=True, slots=True)
class Flow:
    """The ordered checkpoints of a session and an index of their steps."""

    name: str
    checkpoints: tuple[Checkpoint, ...]
    steps: dict[str, Step] = field(default_factory=dict)

    def checkpoint(self, code: str) -> Checkpoint:
        """The checkpoint with this code (KeyError if none)."""
        for cp in self.checkpoints:
            if cp.code == code:
                return cp
        raise KeyError(code)

    def step_checkpoint(self, step_code: str) -> Checkpoint:
        """The checkpoint that holds this step."""
        return self.checkpoint(self.steps[step_code].checkpoint)

    def all_steps(self) -> list[Step]:
        """Every step in flow order."""
        return [s for cp in self.checkpoints for s in cp.steps]

    def step_label(self, code: str) -> str:
        """A step's name as a column header: its own name, or — where two checkpoints have a step of that name
        (领取学位证 at the college desk and at 教务处) — the name with its checkpoint, 领取学位证（教务处离校点）."""
        step = self.steps[code]
        if sum(s.name == step.name for s in self.steps.values()) == 1:
            return step.name
        return f"{step.name}（{self.checkpoint(step.checkpoint).name}）"

    def refund_step(self, year: int) -> Step | None:
        """The step the refund queries read (``refund = true``), if the flow has one in use in ``year``."""
        return next((s for s in self.steps.values() if s.refund and s.enabled(year)), None)

    @property
    def needs_class(self) -> bool:
        """Whether a roster must give every student a 班级: only where some checkpoint ticks by class (按班级);
        graduate rosters have none (manual §3.3: 班级 ____)."""
        return any("class" in cp.batch for cp in self.checkpoints)
