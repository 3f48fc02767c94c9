"""Property tests of the merge rules: any order of the same returns gives the same store."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lixiao.core.clearance.issuance import Baseline, plan_workbooks
from lixiao.core.clearance.merge import CONFLICT, IGNORE, NOOP, MergeInput, apply_plan, cell_decision, plan_merge
from lixiao.core.manual.flow import load_preset
from lixiao.core.manual.model import Status
from lixiao.core.storage.store import StatusRow, Store

from .conftest import ROSTER

FLOW = load_preset("undergrad")
CELLS = [(s.student_no, step) for s in ROSTER for step in ("electricity", "dorm_items")]


@dataclass
class Row:
    """The reader's row shape, minimal."""

    row: int
    marks: dict[str, Status]
    identity: dict[str, str] = field(default_factory=dict)
    remark: str = ""
    key: str = ""
    blank: list[str] = field(default_factory=list)


def fresh_store(tmp: Path, passed: set[tuple[str, str]]) -> Store:
    """A store with the roster and the given cells already passed."""
    store = Store.create(tmp, "2026届本科毕业生离校", 2026, "undergrad")
    store.upsert_students(list(ROSTER), source="test")
    with store.transaction():
        for no, step in sorted(passed):
            store.write_status(no, step, Status.PASSED, remark="", source="test", operator="", decision="applied")
    return store


def baselines(store: Store) -> dict[str, Baseline]:
    """The issued baseline of the utilities and dorm workbooks for this store."""
    result = {}
    for code in ("utilities", "dorm"):
        [plan] = plan_workbooks(FLOW, 2026, "s", FLOW.checkpoint(code), store.students(), store.all_status_rows(), {})
        result[code] = plan.baseline()
    return result


def merge(store: Store, checkpoint: str, baseline: Baseline, ticks: dict[str, dict[str, bool]]) -> None:
    """Plan and apply one return in one transaction, as the pipeline does."""
    marks = {no: {step: Status.PASSED if t else Status.PENDING for step, t in cells.items()}
             for no, cells in ticks.items()}
    returned = MergeInput({no: Row(i, m) for i, (no, m) in enumerate(marks.items())}, [], [], [])
    waived: dict[str, set[str]] = {}
    plan = plan_merge(FLOW, 2026, checkpoint, baseline, returned, {s.student_no: s for s in store.students()},
                      store.all_status_rows(), waived)
    with store.transaction():
        apply_plan(store, plan, source="test", operator="", source_hash="h")


def final(store: Store) -> dict[tuple[str, str], tuple[str, int]]:
    """Every stored cell with its version."""
    return {(n, s): (r.status.value, r.version) for n, rows in store.all_status_rows().items() for s, r in rows.items()}


returns = st.lists(
    st.tuples(st.sampled_from(["utilities", "dorm"]),
              st.dictionaries(st.sampled_from([s.student_no for s in ROSTER]), st.booleans(), min_size=1)),
    min_size=2, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passed=st.sets(st.sampled_from(CELLS)), copies=returns, data=st.data())
def test_any_order_of_returns_gives_the_same_store(
    tmp_path: Path, passed: set[tuple[str, str]], copies: list[tuple[str, dict[str, bool]]], data: st.DataObject
) -> None:
    """Copies of the issued workbooks merged in two different orders leave identical statuses and versions."""
    step = {"utilities": "electricity", "dorm": "dorm_items"}
    orders = [list(range(len(copies))), data.draw(st.permutations(list(range(len(copies)))))]
    results = []
    for attempt, order in enumerate(orders):
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}-{attempt}.db"
        store = fresh_store(path, passed)
        issued = baselines(store)
        for index in order:
            checkpoint, ticks = copies[index]
            merge(store, checkpoint, issued[checkpoint], {no: {step[checkpoint]: v} for no, v in ticks.items()})
        results.append(final(store))
        store.close()
    assert results[0] == results[1]


def row(status: Status, version: int) -> StatusRow:
    """A stored status row."""
    return StatusRow(status, "", version, "", "", "")


P, N, F, OPT = Status.PASSED, Status.PENDING, Status.FAILED, Status.OPTIONAL


def test_cell_decision_table() -> None:
    """The three-way rule for one cell over the four statuses a cell can state, including the version check that
    catches an old copy."""
    assert cell_decision(N, 0, N, None) == IGNORE
    assert cell_decision(N, 0, P, row(Status.PASSED, 1)) == NOOP
    assert cell_decision(N, 0, P, None) == "apply"
    assert cell_decision(P, 1, N, row(Status.PASSED, 1)) == "apply"  # revocation
    assert cell_decision(N, 1, P, row(Status.PENDING, 3)) == CONFLICT  # revoked at v3 after this issue
    assert cell_decision(N, 3, P, row(Status.PENDING, 3)) == "apply"
    assert cell_decision(N, 0, F, None) == "apply"  # 未通过 typed into an empty cell
    assert cell_decision(F, 2, F, row(Status.FAILED, 2)) == IGNORE  # issued 未通过, returned as it was
    assert cell_decision(F, 2, P, row(Status.FAILED, 2)) == "apply"  # 未通过 → ticked once the books are back
    assert cell_decision(N, 0, F, row(Status.FAILED, 1)) == NOOP  # the library feed said so meanwhile
    assert cell_decision(N, 0, OPT, row(Status.PASSED, 1)) == CONFLICT  # the store moved on since issue


def test_permutations_are_all_equal_for_a_revocation_race(tmp_path: Path) -> None:
    """Three copies (tick A, untick B, tick A again) give one result in all six orders."""
    passed = {("0803010104", "electricity")}
    copies = [{"0803010103": True}, {"0803010104": False}, {"0803010103": True, "0803010104": True}]
    seen = set()
    for index, order in enumerate(itertools.permutations(range(3))):
        store = fresh_store(tmp_path / f"{index}.db", passed)
        issued = baselines(store)
        for i in order:
            merge(store, "utilities", issued["utilities"], {n: {"electricity": v} for n, v in copies[i].items()})
        seen.add(tuple(sorted(final(store).items())))
        store.close()
    assert len(seen) == 1
