"""The two shipped flows reproduce the manual (§2.1, §3.2–3.9 and §3.3) exactly."""

from __future__ import annotations

from dataclasses import replace

from lixiao.core.manual import rules
from lixiao.core.manual.flow import flow_to_dict
from lixiao.core.manual.model import Flow, Status

from .conftest import make_student

UNDERGRAD = [
    ("college", "学院离校点", ["转出党团组织关系", "归还教学仪器", "国家助学贷款还款确认"]),
    ("library", "图书馆离校点", ["归还图书"]),
    ("student_affairs", "学生工作处离校点", ["归还学生证", "生源地贷款还款确认"]),
    ("utilities", "水电通信中心离校点", ["清理电费"]),
    ("dorm", "宿管中心离校点", ["清理宿舍物品"]),
    ("network", "网络信息中心离校点", ["归还交换机"]),
    ("finance", "财务处离校点", ["缴还欠款", "退费状态"]),
    ("certificates", "学院领取证件", ["领取学位证", "领取毕业/结业证", "领取报到证", "领取户口迁移证明"]),
    ("registrar", "教务处离校点", ["领取学位证", "领取毕业/结业证"]),
    ("special", "毕业生特殊离校点", []),
]

# The columns of the manual's batch table (§3.4.2), in order, minus 全部完成.
MANUAL_COLUMNS = [
    "转出党团组织关系", "归还教学仪器", "国家助学贷款还款确认", "归还图书", "归还学生证", "生源地贷款还款确认",
    "清理电费", "清理宿舍物品", "归还交换机", "缴还欠款", "退费状态", "领取学位证", "领取毕业/结业证",
    "领取报到证", "领取户口迁移证明",
]


def test_undergrad_checkpoints_and_steps_match_the_manual(undergrad: Flow) -> None:
    """Every undergraduate checkpoint and step name is the manual's, in the manual's order."""
    got = [(cp.code, cp.name, [s.name for s in cp.steps]) for cp in undergrad.checkpoints]
    assert got == UNDERGRAD


def test_undergrad_record_columns_follow_the_manual_batch_table(undergrad: Flow) -> None:
    """The steps of the offices in the 离校记录 read exactly like the manual's batch table header."""
    in_record = [s.name for cp in undergrad.checkpoints if cp.in_record for s in cp.steps]
    assert in_record == MANUAL_COLUMNS


def test_undergrad_applicability(undergrad: Flow) -> None:
    """Loans, the switch and withheld certificates apply only to the flagged students."""
    plain = make_student()
    holder = replace(plain, national_loan=True, local_loan=True, switch=True)
    withheld = replace(plain, withheld_degree=True, withheld_diploma=True)
    def applicable(student: object) -> set[str]:
        return {s.code for s in undergrad.all_steps() if rules.applies(s, student)}  # type: ignore[arg-type]
    optional_codes = {"national_loan", "local_loan", "return_switch"}
    assert applicable(plain).isdisjoint(optional_codes | {"registrar_degree_certificate", "registrar_diploma"})
    assert optional_codes <= applicable(holder)
    assert {"registrar_degree_certificate", "registrar_diploma"} <= applicable(withheld)
    assert "degree_certificate" not in applicable(withheld) and "diploma" not in applicable(withheld)
    assert {"report_card", "hukou_letter"} <= applicable(withheld)


def test_undergrad_batch_modes(undergrad: Flow) -> None:
    """Class batches for college, 学生工作处, finance and certificates; dorm batches for utilities and dorm."""
    batch = {cp.code: cp.batch for cp in undergrad.checkpoints}
    assert batch == {
        "college": ("class",), "library": (), "student_affairs": ("class",), "utilities": ("dorm",),
        "dorm": ("dorm",), "network": (), "finance": ("class",), "certificates": ("class",), "registrar": (),
        "special": (),
    }


def test_undergrad_feeds_and_per_college(undergrad: Flow) -> None:
    """Library and finance steps come from feeds; college and certificate desks exist per college."""
    feeds = {s.code: (s.source, s.feed) for s in undergrad.all_steps() if s.feed}
    assert feeds == {
        "national_loan": ("workbook", "loans:national"), "return_books": ("feed", "library"),
        "local_loan": ("workbook", "loans:local"), "pay_arrears": ("feed", "finance"),
    }
    per_college = {cp.code for cp in undergrad.checkpoints if cp.per_college}
    assert per_college == {"college", "certificates"}
    assert undergrad.checkpoint("college").title_for("机电工程学院") == "机电工程学院离校点"
    assert undergrad.checkpoint("certificates").title_for("机电工程学院") == "机电工程学院领取证件"


def test_refund_status_is_cancelled_from_2017(undergrad: Flow) -> None:
    """退费状态 is enabled for the 2016 cohort and not applicable from 2017 on, history kept."""
    step = undergrad.steps["refund_status"]
    assert step.enabled(2016) and not step.enabled(2017)
    assert rules.effective_status(step, make_student(), Status.PASSED, 2026) is Status.NA
    assert rules.effective_status(step, make_student(), Status.PASSED, 2016) is Status.PASSED


def test_certificates_require_every_office_before_them(undergrad: Flow) -> None:
    """学院领取证件 requires all seven offices before it (§2.1-8), of 财务处 only 缴还欠款: §3.2's refusal leaves out
    the 退费状态 his record lists, and §3.9 frames the finance restriction as 缴还欠费."""
    pre = {s.code for s in rules.prerequisite_steps(undergrad, undergrad.checkpoint("certificates"))}
    before = {s.code for cp in undergrad.checkpoints[:7] for s in cp.steps}
    assert pre == before - {"refund_status"}


def test_registrar_refusal_reproduces_manual_3_2(undergrad: Flow) -> None:
    """沈睿 at 教务处 (§3.2): library passed, the rest pending → exactly the manual's four missing steps."""
    shen = make_student("0703010228", name="沈睿", withheld_degree=True, withheld_diploma=True,
                        dorm="2区-3栋-3层-0309", class_name="08机设3班")
    statuses = {"return_books": Status.PASSED}
    decision = rules.may_set(undergrad, shen, "registrar_degree_certificate", Status.PASSED, statuses, set(), 2026)
    assert not decision.allowed
    assert decision.reason == (
        "当前学生没有完成以下步骤，不能进行当前离校点的离校："
        "学生工作处离校点：归还学生证；水电通信中心离校点：清理电费；宿管中心离校点：清理宿舍物品；财务处离校点：缴还欠款"
    )


def test_special_desk_lifts_arrears(undergrad: Flow, graduate: Flow) -> None:
    """毕业生特殊离校点 lifts the 缴还欠款 restriction in both flows (§3.9)."""
    for flow in (undergrad, graduate):
        special = flow.checkpoint("special")
        assert special.kind == "waiver" and special.lifts == ("pay_arrears",) and not special.in_record


GRADUATE_RECORD = [
    ("学院离校点", ["转出党组织关系", "归还教学仪器、图书", "提交人事档案和培养档案材料"]),
    ("研究生学院(部)学位办离校点", ["学位办毕业答辩结果确认"]),
    ("图书馆离校点", ["归还图书", "提交毕业论文电子稿和论文1本"]),
    ("研究生学院(部)离校点", ["省、校创新基金项目结题", "提交就业协议或就业去向证明材料", "人事档案和培养档案复审"]),
    ("水电通信中心离校点", ["清理电费"]),
    ("宿管中心离校点", ["清理宿舍物品"]),
    ("财务处离校点", ["缴还欠款", "退费状态"]),
    ("学院领取证件", ["领取学位证", "领取毕业证", "领取报到证"]),
]


def test_graduate_has_the_eight_record_checkpoints_of_3_3(graduate: Flow) -> None:
    """The graduate 离校记录 is the eight checkpoints of §3.3 with their steps."""
    record = [(cp.name, [s.name for s in cp.steps]) for cp in graduate.checkpoints if cp.in_record]
    assert record == GRADUATE_RECORD
    assert graduate.checkpoint("college").title_for("教育学院") == "教育学院离校点"
    assert graduate.checkpoint("graduate_school").batch == ("college", "dorm")
    assert graduate.checkpoint("degree_office").batch == ("college",)


def test_flow_json_has_the_contract_fields(undergrad: Flow) -> None:
    """flow show --json carries code, name, per_college, batch, requires and steps with enabled."""
    doc = flow_to_dict(undergrad, 2026)
    cp = doc["checkpoints"][0]
    assert {"code", "name", "per_college", "batch", "requires", "steps"} <= set(cp)
    assert {"code", "name", "applies_to", "source", "enabled"} <= set(cp["steps"][0])
    refund = next(s for c in doc["checkpoints"] for s in c["steps"] if s["code"] == "refund_status")
    assert refund["enabled"] is False
    books = next(s for c in doc["checkpoints"] for s in c["steps"] if s["code"] == "return_books")
    assert books["source"] == "feed:library"
