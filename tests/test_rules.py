"""The manual's rules as pure functions: no files, no store."""

from __future__ import annotations

from dataclasses import replace

from lixiao.core.manual import rules
from lixiao.core.manual.model import Flow, Status

from .conftest import make_student

BEFORE_CERTIFICATES = ["party_transfer", "return_instruments", "return_books", "return_student_card",
                       "electricity", "dorm_items"]


def everything_passed_but(flow: Flow, *codes: str) -> dict[str, Status]:
    """Statuses where every step is passed except ``codes`` (left pending)."""
    return {s.code: Status.PASSED for s in flow.all_steps() if s.code not in codes}


def test_non_applicable_step_is_na_not_pending(undergrad: Flow) -> None:
    """A student without a loan sees 国家助学贷款还款确认 as not applicable."""
    step = undergrad.steps["national_loan"]
    assert rules.effective_status(step, make_student(), None, 2026) is Status.NA
    assert rules.effective_status(step, make_student(national_loan=True), None, 2026) is Status.PENDING


def test_pass_refused_while_arrears_pending_names_the_step(undergrad: Flow) -> None:
    """领取学位证 is refused while 缴还欠款 is pending, in the manual's words."""
    statuses = everything_passed_but(undergrad, "pay_arrears", "degree_certificate")
    decision = rules.may_set(undergrad, make_student(), "degree_certificate", Status.PASSED, statuses, set(), 2026)
    assert not decision.allowed
    assert decision.reason == "当前学生没有完成以下步骤，不能进行当前离校点的离校：财务处离校点：缴还欠款"
    assert [s.code for s in decision.missing] == ["pay_arrears"]


def test_waiver_meets_the_prerequisite(undergrad: Flow) -> None:
    """A lifted restriction lets the certificate pass although arrears stay unpaid."""
    statuses = everything_passed_but(undergrad, "pay_arrears", "degree_certificate")
    decision = rules.may_set(
        undergrad, make_student(), "degree_certificate", Status.PASSED, statuses, {"pay_arrears"}, 2026
    )
    assert decision.allowed


def test_optional_and_na_meet_prerequisites(undergrad: Flow) -> None:
    """可办可不办 and not-applicable prerequisite steps do not block."""
    statuses = everything_passed_but(undergrad, "degree_certificate")
    statuses["return_instruments"] = Status.OPTIONAL
    statuses.pop("national_loan")  # not applicable to this student anyway
    assert rules.may_set(undergrad, make_student(), "degree_certificate", Status.PASSED, statuses, set(), 2026).allowed


def test_failed_prerequisite_blocks(undergrad: Flow) -> None:
    """A failed library step (books not returned) blocks the certificates."""
    statuses = everything_passed_but(undergrad, "degree_certificate")
    statuses["return_books"] = Status.FAILED
    decision = rules.may_set(undergrad, make_student(), "degree_certificate", Status.PASSED, statuses, set(), 2026)
    assert decision.reason.endswith("图书馆离校点：归还图书")


def test_failing_a_step_needs_no_prerequisites(undergrad: Flow) -> None:
    """Recording 未通过 is always allowed; only passing is gated."""
    assert rules.may_set(undergrad, make_student(), "degree_certificate", Status.FAILED, {}, set(), 2026).allowed


def test_setting_a_non_applicable_or_cancelled_step_is_refused(undergrad: Flow) -> None:
    """A switch step for a student who borrowed none, or 退费状态 after 2017, cannot be set."""
    d1 = rules.may_set(undergrad, make_student(), "return_switch", Status.PASSED, {}, set(), 2026)
    d2 = rules.may_set(undergrad, make_student(), "refund_status", Status.PASSED, {}, set(), 2026)
    assert d1.reason == "该生不需要办理“归还交换机”（不适用）"
    assert d2.reason == "步骤“退费状态”自 2017 年起已取消，不能再办理"


def test_per_college_checkpoint_named_for_the_student(undergrad: Flow) -> None:
    """Missing college steps are named with the student's college (机电工程学院离校点)."""
    statuses = everything_passed_but(undergrad, "party_transfer", "degree_certificate")
    decision = rules.may_set(undergrad, make_student(), "degree_certificate", Status.PASSED, statuses, set(), 2026)
    assert decision.reason.endswith("机电工程学院离校点：转出党团组织关系")


def test_waiver_refused_on_passed_step(undergrad: Flow) -> None:
    """The special desk cannot lift a restriction on a step that is already passed (§3.9 note)."""
    decision = rules.may_waive(undergrad, make_student(), "pay_arrears", Status.PASSED, False, 2026)
    assert decision.reason == "“缴还欠款”已通过，无法调整离校点限制"
    assert rules.may_waive(undergrad, make_student(), "pay_arrears", Status.FAILED, False, 2026).allowed
    assert not rules.may_waive(undergrad, make_student(), "pay_arrears", Status.FAILED, True, 2026).allowed


def test_waiver_needs_a_restriction(undergrad: Flow) -> None:
    """Steps no checkpoint depends on (the certificates) have no restriction to lift."""
    decision = rules.may_waive(undergrad, make_student(), "hukou_letter", Status.PENDING, False, 2026)
    assert "不是任何离校点的前置条件" in decision.reason


def test_complete_requires_every_applicable_step(undergrad: Flow) -> None:
    """全部完成 ignores not-applicable and cancelled steps, but a waiver is not a pass."""
    student = make_student()
    statuses = everything_passed_but(undergrad)
    assert rules.is_complete(undergrad, student, statuses, 2026)
    statuses.pop("refund_status")
    statuses.pop("national_loan")
    assert rules.is_complete(undergrad, student, statuses, 2026)
    statuses["pay_arrears"] = Status.FAILED
    assert not rules.is_complete(undergrad, student, statuses, 2026)


def test_withheld_student_completes_at_the_registrar(undergrad: Flow) -> None:
    """A student with withheld certificates is complete only after 教务处 hands them over (alternate desk)."""
    student = replace(make_student(), withheld_degree=True, withheld_diploma=True)
    statuses = everything_passed_but(undergrad, "registrar_degree_certificate", "registrar_diploma")
    assert not rules.is_complete(undergrad, student, statuses, 2026)
    statuses.update(registrar_degree_certificate=Status.PASSED, registrar_diploma=Status.PASSED)
    assert rules.is_complete(undergrad, student, statuses, 2026)


def test_blocked_steps_lists_each_with_its_missing(undergrad: Flow) -> None:
    """blocked_steps reports only unpassed steps whose prerequisites are unmet."""
    statuses = everything_passed_but(undergrad, "pay_arrears", "degree_certificate", "diploma")
    blocked = rules.blocked_steps(undergrad, make_student(), statuses, set(), 2026)
    assert [(s.code, [m.code for m in missing]) for s, missing in blocked] == [
        ("degree_certificate", ["pay_arrears"]), ("diploma", ["pay_arrears"]),
    ]
    assert rules.blocked_steps(undergrad, make_student(), statuses, {"pay_arrears"}, 2026) == []


def test_fast_matrix_agrees_with_the_rules(tmp_path: object) -> None:
    """Clearance.student_matrix (cached by flags) gives exactly rules.effective_status and rules.is_complete."""
    import random
    from pathlib import Path

    from lixiao.core.clearance.clearance import Clearance
    from lixiao.core.manual.flow import load_preset
    from lixiao.core.storage.store import Store

    flow = load_preset("undergrad")
    rng = random.Random(7)
    students = [make_student(f"08{i:08d}", id_card="", previous=rng.random() < .3, national_loan=rng.random() < .5,
                             local_loan=rng.random() < .5, switch=rng.random() < .5,
                             withheld_degree=rng.random() < .5, withheld_diploma=rng.random() < .5)
                for i in range(60)]
    store = Store.create(Path(str(tmp_path)) / "s.db", "2026届", 2026, "undergrad")
    store.upsert_students(students, source="test")
    with store.transaction():
        for s in students:
            for step in flow.all_steps():
                if rng.random() < 0.6:
                    store.write_status(s.student_no, step.code, rng.choice(list(Status)), remark="", source="t",
                                       operator="", decision="applied")
    stored = store.all_statuses()
    for student, effective, _, complete in Clearance(store, flow).student_matrix():
        mine = stored.get(student.student_no, {})
        assert effective == {s.code: rules.effective_status(s, student, mine.get(s.code), 2026)
                             for s in flow.all_steps()}
        assert complete == rules.is_complete(flow, student, mine, 2026)


def test_waiver_only_for_steps_the_special_desk_lifts(undergrad: Flow) -> None:
    """Only the waiver checkpoint's `lifts` (缴还欠款) may be lifted; 清理电费 and 转出党团组织关系 may not."""
    for step, name in (("electricity", "清理电费"), ("party_transfer", "转出党团组织关系")):
        decision = rules.may_waive(undergrad, make_student(), step, Status.PENDING, False, 2026)
        assert decision.reason == f"特殊离校点只能解除“缴还欠款”的限制；“{name}”须由所在离校点办理，不能解除"
    assert rules.may_waive(undergrad, make_student(), "pay_arrears", Status.PENDING, False, 2026).allowed
    assert [s.code for s in rules.liftable_steps(undergrad)] == ["pay_arrears"]
