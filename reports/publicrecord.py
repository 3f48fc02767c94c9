"""What a student sees on the page safe to publish (学生离校查询), for the whole roster in one pass: the manual's
学生界面 (§2.1) — each step's status at the student's own desks, why a step failed, the library's 借阅册数 and 欠款
and finance's 欠费金额 from the feeds, a lifted restriction with its reason, and what blocks which step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lixiao.core.clearance.clearance import Clearance
from lixiao.core.feeds.exports import finance_amount, library_amounts
from lixiao.core.manual import rules
from lixiao.core.manual.model import Flow, Status, Step, Student
from lixiao.core.manual.stats import STATUS_OF_CODE
from lixiao.core.storage.store import Store

_NONE: dict[str, object] = {}
_FEED_SOURCE = "feed:"  # the source of a status a feed set (sync/cli/feed.py: feed:<kind>:<file>)


@dataclass(frozen=True, slots=True)
class PageSteps:
    """The page's step list (in clear in settings.js: the flow, nothing about a student) — [generic desk, step] —
    and each step's index in it."""

    steps: list[list[str]]
    index: dict[str, int]


def page_steps(flow: Flow) -> PageSteps:
    """Every step of the flow as the page lists it; a record names its own per-college desks (``titles``)."""
    steps = [[cp.title_for(""), step.name] for cp in flow.checkpoints for step in cp.steps]
    return PageSteps(steps, {step.code: i for i, step in enumerate(flow.all_steps())})


def _amounts(step: Step, status: Status, remark: str) -> str | None:
    """What a feed's status says in the manual's words: 借阅册数 and 欠款, or 欠费金额."""
    if step.feed == "library" and (books := library_amounts(status, remark)):
        return f"借阅册数 {books[0]} 册，欠款 {books[1]} 元"
    if step.feed == "finance" and (owed := finance_amount(status, remark)) is not None:
        return f"欠费金额 {owed} 元"
    return None


class _Notes:
    """Each (student, step)'s note: a feed's amounts, a failed step's remark, a lifted restriction's reason."""

    def __init__(self, store: Store, flow: Flow) -> None:
        feed_steps = [s.code for s in flow.all_steps() if s.feed in ("library", "finance")]
        marks = ",".join("?" * len(feed_steps)) or "''"
        self.rows: dict[str, dict[str, tuple[str, str, str]]] = {}  # 学号 → step → (stored status, remark, source)
        query = f"SELECT student_no, step, status, remark, source FROM statuses WHERE remark != '' OR step IN ({marks})"
        for no, step, status, remark, source in store.db.execute(query, feed_steps):
            self.rows.setdefault(no, {})[step] = (status, remark, source)
        self.reasons: dict[str, dict[str, str]] = {}  # 学号 → step → the reason of the restriction lifted
        for waiver in store.active_waivers():
            self.reasons.setdefault(waiver.student_no, {})[waiver.step] = waiver.reason

    def note(self, no: str, step: Step, status: Status) -> str:
        """The note shown beside one step whose effective status is ``status``."""
        waived = self.reasons.get(no, {}).get(step.code)
        if waived is not None:
            return f"已解除限制：{waived}"
        row = self.rows.get(no, {}).get(step.code)
        if row is None or row[0] != status.value:
            return ""
        if row[2].startswith(_FEED_SOURCE) and (amounts := _amounts(step, status, row[1])) is not None:
            return amounts
        return row[1] if status is Status.FAILED else ""


class _Blocked:
    """What blocks which step: [step index, [indexes of the missing steps]] (the page words it with the student's
    desks). The board's codes already say which steps apply (不适用 is "-"), so the rule's answer depends on the
    codes and the waivers only: worked out once per distinct pair."""

    def __init__(self, flow: Flow, year: int, index: dict[str, int]) -> None:
        self.flow, self.year, self.index = flow, year, index
        self.found: dict[tuple[str, frozenset[str]], list[list[object]]] = {}

    def of(self, student: Student, codes: str, statuses: dict[str, Status], waived: set[str]) -> list[list[object]]:
        """The blocked steps of one student who is not complete (``statuses``: the board's, from ``codes``)."""
        key = (codes, frozenset(waived))
        found = self.found.get(key)
        if found is None:
            found = self.found[key] = [
                [self.index[step.code], [self.index[m.code] for m in missing]]
                for step, missing in rules.blocked_steps(self.flow, student, statuses, waived, self.year)]
        return found


def page_labels() -> dict[str, str]:
    """The status labels a record's one-letter codes (the board's) stand for, for settings.js."""
    return {code: status.label for code, status in STATUS_OF_CODE.items() if status is not Status.NA}


def public_records(store: Store, flow: Flow, layout: PageSteps) -> Iterator[tuple[Student, dict[str, object]]]:
    """Every student with the record the page shows them (the board's statuses: the same as ``lixiao status``):
    identity without the ID, 全部完成 (1/0), steps as [index, board code, note, 1 when waived] (shorter entries
    when there is no note), the college's own desk names, and what blocks which step."""
    clearance = Clearance(store, flow)
    board = clearance.board()
    notes = _Notes(store, flow)
    blocked = _Blocked(flow, clearance.year, layout.index)
    per_college = [cp for cp in flow.checkpoints if cp.per_college]
    shown = [(layout.index[step.code], step) for step in board.steps]
    lists: dict[tuple[str, frozenset[str]], list[tuple[Step, Status, list[object]]]] = {}
    desks: dict[str, dict[str, str]] = {}  # per college: the generic desk name → the college's own (one object each)
    for i, student in enumerate(board.students):
        no, codes = student.student_no, board.codes[i]
        waived = board.waived.get(no, set())
        key = (codes, frozenset(waived))
        plain = lists.get(key)
        if plain is None:  # shared by every student with these codes and waivers (and no note)
            plain = lists[key] = [(step, STATUS_OF_CODE[code], [index, code])
                                  for (index, step), code in zip(shown, codes, strict=True) if code != "-"]
        rows, reasons = notes.rows.get(no, _NONE), notes.reasons.get(no, _NONE)
        steps = [entry if not (step.code in rows or step.code in reasons)
                 or not (note := notes.note(no, step, status))
                 else [*entry, note, 1] if step.code in reasons else [*entry, note]
                 for step, status, entry in plain]
        titles = desks.get(student.college)
        if titles is None:
            titles = desks[student.college] = {cp.title_for(""): cp.title_for(student.college)
                                               for cp in per_college if student.college}
        yield student, {"no": no, "name": student.name, "college": student.college, "class": student.class_name,
                        "complete": int(board.complete[i]), "steps": steps, "titles": titles,
                        "blocked": [] if board.complete[i] else blocked.of(student, codes, board.statuses(i), waived)}
