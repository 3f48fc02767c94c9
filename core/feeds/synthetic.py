"""A realistic synthetic cohort for the demo and the benchmarks (deterministic for a seed)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from decimal import Decimal

from lixiao.core.manual.identity import id_check_digit
from lixiao.core.manual.model import Student

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建宇"
    "浩然睿思远欣怡子轩梓涵雨晨佳琪嘉诚俊杰晓东志强海龙文博"
)
# college code, college, [(major code, major, class abbreviation)]
COLLEGES = [
    ("01", "能源与安全工程学院", [("01", "安全工程", "安全"), ("02", "采矿工程", "采矿")]),
    ("02", "土木工程学院", [("01", "土木工程", "土木"), ("02", "工程管理", "工管")]),
    ("03", "机电工程学院", [("01", "机械设计制造及其自动化", "机设"), ("02", "测控技术与仪器", "测控")]),
    ("04", "信息与电气工程学院", [("01", "电气工程及其自动化", "电气"), ("02", "通信工程", "通信")]),
    ("05", "计算机科学与工程学院", [("01", "计算机科学与技术", "计科"), ("02", "软件工程", "软件")]),
    ("06", "数学与计算科学学院", [("01", "数学与应用数学", "数学"), ("02", "信息与计算科学", "信计")]),
    ("07", "化学化工学院", [("01", "化学工程与工艺", "化工"), ("02", "应用化学", "应化")]),
    ("08", "外国语学院", [("01", "英语", "英语"), ("02", "日语", "日语")]),
    ("09", "商学院", [("01", "会计学", "会计"), ("02", "市场营销", "营销")]),
    ("10", "人文学院", [("01", "汉语言文学", "汉语言"), ("02", "新闻学", "新闻")]),
]
REGIONS = ("430103", "430104", "430111", "430121", "430302", "430304", "430402", "430502", "431002", "110105")
CLASS_SIZE = 30


@dataclass
class Cohort:
    """Students plus what the library and finance systems would export about them."""

    students: list[Student]
    library: list[tuple[str, int, Decimal]] = field(default_factory=list)  # 学号, 借阅册数, 欠费
    finance: list[tuple[str, Decimal]] = field(default_factory=list)  # 学号, 欠费金额
    loans: list[tuple[str, str]] = field(default_factory=list)  # 身份证号, 贷款类型


def _id_card(rng: random.Random, male: bool, birth_year: int) -> str:
    body = f"{rng.choice(REGIONS)}{birth_year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    seq = rng.randint(0, 499) * 2 + (1 if male else 0)
    first17 = f"{body}{seq:03d}"
    return first17 + id_check_digit(first17)


@dataclass
class _Room:
    """A dorm room being filled while the cohort is made."""

    name: str
    beds: int
    taken: int = 0


def make_cohort(count: int = 3000, year: int = 2026, seed: int = 2026) -> Cohort:
    """A cohort of ``count`` undergraduates of ``year`` with loans, 往届, withheld certificates and dorms."""
    rng = random.Random(seed)
    entry = year - 4
    students: list[Student] = []
    per_major = max(1, count // (len(COLLEGES) * 2))
    used_ids: set[str] = set()
    rooms: dict[tuple[str, str], _Room] = {}
    counter = [0]

    def assign_room(key: tuple[str, str]) -> str:
        state = rooms.get(key)
        if state is None or state.taken >= state.beds:
            n = counter[0]
            counter[0] += 1
            room, floor, building, zone = n % 10 + 1, (n // 10) % 6 + 1, (n // 60) % 12 + 1, n // 720 + 1
            state = _Room(f"{zone}区-{building}栋-{floor}层-{floor:02d}{room + 20:02d}", rng.choice((4, 4, 4, 6)))
            rooms[key] = state
        state.taken += 1
        return state.name

    index = 0
    while len(students) < count:
        college_code, college, majors = COLLEGES[(index // 2) % len(COLLEGES)]
        major_code, major, abbr = majors[index % 2]
        for seat in range(per_major):
            if len(students) >= count:
                break
            previous = rng.random() < 0.03
            cohort = entry - 1 if previous else entry
            class_no = 1 + seat // CLASS_SIZE
            male = rng.random() < 0.6
            gender = "男" if male else "女"
            student_no = f"{cohort % 100:02d}{college_code}{major_code}{class_no:02d}{seat % CLASS_SIZE + 1:02d}"
            while student_no in used_ids:
                student_no = student_no[:-2] + f"{rng.randint(31, 99):02d}"
            used_ids.add(student_no)
            dorm = assign_room((college_code, gender)) if rng.random() > 0.04 else ""
            students.append(Student(
                student_no=student_no,
                name=rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
                gender=gender,
                id_card=_id_card(rng, male, rng.randint(entry - 20, entry - 17)),
                college=college,
                major=major,
                class_name=f"{cohort % 100:02d}{abbr}{class_no}班",
                dorm=dorm,
                level="本科",
                previous=previous,
                national_loan=rng.random() < 0.10,
                local_loan=rng.random() < 0.05,
                switch=rng.random() < 0.03,
                # 暂缓发证 for 2 % of students, a quarter of them the 学位证 alone
                withheld_degree=(draw := rng.random()) < 0.02, withheld_diploma=0.005 <= draw < 0.02,
            ))
        index += 1
    first = next((i for i, s in enumerate(students) if s.withheld), None)
    if first is not None:  # the first withheld student has the 学位证 alone withheld: every such cohort shows one
        students[first] = replace(students[first], withheld_degree=True, withheld_diploma=False)
    result = Cohort(students)
    for s in students:
        books = rng.choice((1, 2, 3)) if rng.random() < 0.06 else 0
        fine = Decimal(rng.randint(1, 80)) / 2 if rng.random() < 0.03 else Decimal(0)
        result.library.append((s.student_no, books, fine))
        owed = Decimal(rng.randint(100, 6000)) if rng.random() < 0.06 else Decimal(0)
        result.finance.append((s.student_no, owed))
        if s.national_loan and rng.random() < 0.7:
            result.loans.append((s.id_card, "国家助学贷款"))
        if s.local_loan and rng.random() < 0.8:
            result.loans.append((s.id_card, "生源地贷款"))
    return result

