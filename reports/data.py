"""Everything a report shows, gathered once from the store and the flow (no rendering here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lixiao.core.clearance.certificates import ReadyList, board_ready_lists
from lixiao.core.clearance.clearance import Clearance, WaiverListing
from lixiao.core.clearance.refunds import RefundLine, refund_lines
from lixiao.core.clearance.review import open_items
from lixiao.core.feeds.exports import WHOLE_SCHOOL_FEEDS
from lixiao.core.manual import rules
from lixiao.core.manual.identity import mask_id_card, mask_ids_in_text
from lixiao.core.manual.model import Flow, Step
from lixiao.core.manual.rules import prerequisite_steps
from lixiao.core.manual.stats import (
    Board,
    GroupProgress,
    Progress,
    bottlenecks,
    checkpoint_progress,
    group_progress,
    school_progress,
)
from lixiao.core.storage.ledger import Channel
from lixiao.core.storage.store import Store

REVIEW_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class ConflictLine:
    """A conflict in the review queue."""

    student_no: str
    name: str
    step_name: str
    baseline: str
    returned: str
    current: str
    file_name: str
    id: str = ""  # the review item (lixiao review resolve ID …)


@dataclass(frozen=True, slots=True)
class RefusalLine:
    """A refused tick in the review queue."""

    student_no: str
    name: str
    step_name: str
    value: str
    reason: str
    file_name: str
    id: str = ""


@dataclass(frozen=True, slots=True)
class RejectionLine:
    """A file refused as a whole, with its reason in words (never the ledger's JSON)."""

    file_name: str
    outcome: str
    reason: str
    updated_at: str
    id: str = ""


@dataclass(frozen=True, slots=True)
class FeedGapLine:
    """A student a whole-school export (library, finance) never mentioned: the step stays 未办理."""

    step_name: str
    student_no: str
    name: str
    college: str
    class_name: str


@dataclass(frozen=True, slots=True)
class OfficeLine:
    """An office's latest workbook and last return."""

    checkpoint: str
    title: str
    scope: str
    generation: int
    issued_at: str
    returned_at: str | None
    days: int | None
    stale: bool
    returned_by: str = ""  # 交回人: the 经办人 of the last merged return, with its channel and sender
    program: str = ""  # the program that saved it


@dataclass
class ReportData:
    """The figures and lists of one report, ready for any renderer."""

    session: str
    year: int
    generated_at: str
    flow: Flow
    school: Progress
    checkpoints: list[tuple[Progress, list[Progress]]]
    colleges: list[GroupProgress]
    classes: dict[str, list[GroupProgress]]  # college → classes (or 培养层次 专业 where a student has no 班级)
    buildings: list[GroupProgress]
    bottleneck_colleges: list[str]
    bottlenecks: list[tuple[str, str, dict[str, int], int]]
    waivers: list[WaiverListing]
    conflicts: list[ConflictLine]
    refused: list[RefusalLine]
    rejected: list[RejectionLine]
    offices: list[OfficeLine]
    history: list[tuple[str, int, int]]
    ready_lists: list[ReadyList] = field(default_factory=list)  # 可领证名单 per certificate office
    college_checkpoints: dict[str, list[tuple[Progress, list[Progress]]]] = field(default_factory=dict)
    feed_gaps: list[FeedGapLine] = field(default_factory=list)  # the first REVIEW_LIMIT of them
    feed_gap_count: int = 0
    js_flow: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    board: Board | None = None  # the status matrix itself (student search, Excel report)
    group_title: str = "班级"  # what ``classes`` are: 班级, 培养层次 · 专业 (graduates), or both
    levels: list[GroupProgress] = field(default_factory=list)  # per 培养层次, where the cohort is not all 本科
    refund_step: Step | None = None  # the 退费状态 step in use this session, if any (统计查询)
    refunds: list[RefundLine] = field(default_factory=list)


def student_rows(data: ReportData) -> list[list[Any]]:
    """One row per student for the search page (students.js): identity with the ID masked, 往届, 全部完成,
    the status codes in flow order and the indexes of waived steps."""
    board = data.board
    if board is None:
        return []
    index = {s.code: i for i, s in enumerate(board.steps)}
    return [
        [student.student_no, student.name, student.gender, mask_id_card(student.id_card), student.college,
         student.major, student.class_name, student.dorm, int(student.previous), int(complete), codes,
         sorted(index[c] for c in board.waived[student.student_no] if c in index)
         if student.student_no in board.waived else []]
        for student, codes, complete in zip(board.students, board.codes, board.complete, strict=True)
    ]


def _days_since(stamp: str | None, now: datetime) -> int | None:
    if not stamp:
        return None
    return (now - datetime.fromisoformat(stamp)).days


def feed_gaps(store: Store, flow: Flow, board: Board) -> list[FeedGapLine]:
    """Students for whom a whole-school feed step applies and nothing was ever stored although that export was
    imported (absent from every import so far): without a warning they would block their certificates
    silently."""
    year = store.session().year
    steps = [s for s in flow.all_steps() if s.feed in WHOLE_SCHOOL_FEEDS and s.enabled(year)]
    if not steps:
        return []
    lines = store.status_lines()
    stored = {no: set(steps_text.split(":")) for no, (steps_text, _) in lines.items()}
    found = []
    for step in steps:
        if not any(step.code in codes for codes in stored.values()):
            continue  # that export was not imported yet: not a gap, just not started
        for student in board.students:
            if step.code not in stored.get(student.student_no, ()) and rules.applies(step, student):
                found.append(FeedGapLine(step.name, student.student_no, student.name, student.college,
                                         student.class_name))
    return found


def group_title(board: Board) -> str:
    """What the per-college groups are called: 班级, or 培养层次 · 专业 where the roster has no classes."""
    with_class = sum(bool(s.class_name) for s in board.students)
    if with_class == len(board.students):
        return "班级"
    return "培养层次 · 专业" if with_class == 0 else "班级 / 培养层次 · 专业"


def collect(store: Store, flow: Flow, stale_days: int = 3, board: Board | None = None) -> ReportData:
    """Gather the report's data in one pass over the store (``board``: the one just read from it, if
    any); records today's progress snapshot."""
    session = store.session()
    clearance = Clearance(store, flow)
    board = board or clearance.board()
    school = school_progress(board)
    store.record_progress(school.expected, school.expected - school.unfinished)
    now = datetime.now().astimezone()
    steps = board.steps
    index = {s.code: i for i, s in enumerate(steps)}
    js_flow = {
        "steps": [s.name for s in steps],
        "checkpoints": [
            {"name": cp.name, "display": cp.display if cp.per_college else "",
             "steps": [index[s.code] for s in cp.steps],
             "requires": [index[s.code] for s in prerequisite_steps(flow, cp)], "record": cp.in_record}
            for cp in flow.checkpoints if cp.steps
        ],
    }
    classes: dict[str, list[GroupProgress]] = {}
    by_class_college: dict[str, str] = {}
    for student in board.students:
        by_class_college.setdefault(student.class_group, student.college)
    for group in group_progress(board, "class"):
        classes.setdefault(by_class_college[group.name], []).append(group)
    bottleneck_colleges, bottleneck_rows = bottlenecks(flow, board)
    names = {s.code: s.name for s in steps}
    people = {s.student_no: s.name for s in board.students}
    # the 待核对 queue shows open items only (resolved ones, and those the store has settled since, drop out)
    queue = open_items(clearance, REVIEW_LIMIT)
    still_open = {item.id for item in queue}
    file_ids = {item.file_hash: item.id for item in queue if item.kind in ("file", "held", "sender")}
    conflicts = [ConflictLine(c.student_no, people.get(c.student_no, ""), names.get(c.step, c.step), c.baseline,
                              c.returned, c.current, c.file_name, f"C{c.id}")
                 for c in store.open_conflicts(REVIEW_LIMIT) if f"C{c.id}" in still_open]
    refused = [RefusalLine(r.student_no, people.get(r.student_no, ""), names.get(r.step, r.step), r.value, r.reason,
                           r.file_name, f"T{r.id}")
               for r in store.open_refusals(REVIEW_LIMIT) if f"T{r.id}" in still_open]
    rejected = [RejectionLine(r.file_name, r.outcome, r.details.message or r.details.flagged or r.detail, r.updated_at,
                              file_ids[r.hash])
                for r in store.open_rejections(REVIEW_LIMIT) if r.hash in file_ids]
    gaps = feed_gaps(store, flow, board)
    colleges = group_progress(board, "college")
    refund_step = flow.refund_step(session.year)
    levels = group_progress(board, "level")
    if [g.name for g in levels] in ([], ["本科"]):
        levels = []
    offices = []
    codes = {c.code for c in flow.checkpoints}
    for row in store.office_returns():
        title = flow.checkpoint(row.checkpoint).name if row.checkpoint in codes else row.checkpoint
        since = _days_since(row.returned_at or row.issued_at, now)
        channel, _, sender = row.returned_by.partition(" ")
        came = " ".join(filter(None, [Channel(channel).label if channel in {c.value for c in Channel} else channel,
                                      mask_ids_in_text(sender)]))
        by = f"{mask_ids_in_text(row.operator)}（{came}）" if row.operator and came else row.operator or came
        offices.append(OfficeLine(row.checkpoint, title, row.scope, row.generation, row.issued_at, row.returned_at,
                                  since, since is not None and since >= stale_days, by, row.program))
    ledger = store.merged_summary()
    return ReportData(
        session=session.name, year=session.year, generated_at=now.isoformat(timespec="seconds"), flow=flow,
        school=school, checkpoints=checkpoint_progress(flow, board), colleges=colleges,
        classes=classes, buildings=group_progress(board, "building"), bottleneck_colleges=bottleneck_colleges,
        bottlenecks=bottleneck_rows, waivers=clearance.waiver_list(), conflicts=conflicts, refused=refused,
        rejected=rejected, offices=offices, history=store.progress_history(),
        ready_lists=board_ready_lists(flow, board, session.year), js_flow=js_flow,
        feed_gaps=gaps[:REVIEW_LIMIT], feed_gap_count=len(gaps),
        college_checkpoints={c.name: checkpoint_progress(flow, board, c.name) for c in colleges},
        group_title=group_title(board), levels=levels, refund_step=refund_step,
        refunds=refund_lines(flow, session.year, board.students, store.step_rows(refund_step.code), refund_step)
        if refund_step else [],
        sources={"returns": ledger[0], "last_return": ledger[1] or "", "store": str(store.path.name)},
        board=board,
    )
