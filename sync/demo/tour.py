"""``lixiao demo``: the cycle on a synthetic cohort, through the same functions the commands use."""

from __future__ import annotations

import csv
import io
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from lixiao.core.feeds.exports import parse_feed
from lixiao.core.feeds.synthetic import make_cohort
from lixiao.core.manual import rules
from lixiao.core.manual.model import Flow, Status
from lixiao.core.manual.roster import validate_roster
from lixiao.core.manual.stats import CODES, Board, checkpoint_progress, school_progress
from lixiao.sync.datafolder import SETTINGS, DataFolder, DataFolderError, init_folder, secret_key
from lixiao.sync.live.batch import refresh_reports
from lixiao.sync.live.delivery import RETURN, TODO, refresh, routes, send_offices
from lixiao.sync.live.shares import take_share_returns
from lixiao.sync.takeback.inbox import safe_name
from lixiao.sync.takeback.outcomes import FileOutcome
from lixiao.workbooks.roster import build_roster, roster_row
from lixiao.workbooks.tables import read_table

from .officesim import Simulated, simulate_round

DEMO_MARK = ".lixiao-demo"
SHARE = "共享"  # the demo's campus share, inside the demo folder
YEAR = 2026


def _csv(headers: list[str], rows: list[tuple[object, ...]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _prepare(directory: Path) -> None:
    """Start from an empty folder; only a folder an earlier demo made is ever removed."""
    if directory.exists() and any(directory.iterdir()):
        if not (directory / DEMO_MARK).exists():
            raise DataFolderError(f"{directory} 不是空文件夹，也不是演示文件夹；请换一个文件夹名")
        shutil.rmtree(directory)


def _places(folder: DataFolder) -> dict[str, list[tuple[Path, Path]]]:
    """Per checkpoint, each office's shared 待办/ and 交回/ (where the simulated staff take and put files)."""
    places: dict[str, list[tuple[Path, Path]]] = {}
    for route in routes(folder):
        if route.share is not None:
            places.setdefault(route.instance.checkpoint.code, []).append((route.share / TODO, route.share / RETURN))
    return places


Progressed = Callable[[int, int, str], None]


def _office_round(folder: DataFolder, bar: Progress, seed: int, number: int, offices: list[str],
                  deliver: Callable[[Progressed], int]) -> tuple[list[tuple[Simulated, FileOutcome]], int]:
    """Deliver workbooks into the offices' shared folders, let the simulated offices tick them and put them into
    交回/, and take them back the way ``lixiao sync`` and ``lixiao watch`` do."""
    task = bar.add_task(f"第 {number} 轮：签发并投递工作簿", total=None)

    def report(done: int, total: int, name: str) -> None:
        bar.update(task, completed=done, total=total, description=f"第 {number} 轮：{name}")

    delivered = deliver(report)
    bar.update(task, description=f"第 {number} 轮：各离校点在共享文件夹中勾选并交回", completed=0, total=None)
    simulated = simulate_round(folder.root, folder.root / "inbox", offices, random.Random(seed + number),
                               first=number == 1, places=_places(folder))
    bar.update(task, description=f"第 {number} 轮：收取各离校点“交回”文件夹", total=len(simulated), completed=0)
    taken: dict[Path, FileOutcome] = {}
    paths = {safe_name(sim.path.name): sim.path for sim in simulated}
    for outcome in take_share_returns(folder, secret_key(folder.root), min_age=0,
                                      on_outcome=lambda _o: bar.advance(task)):
        if outcome.file in paths:
            taken[paths[outcome.file]] = outcome
    return [(sim, taken[sim.path]) for sim in simulated if sim.path in taken], delivered


def manual_lines(flow: Flow, board: Board) -> list[str]:
    """Two rules of the manual the season shows: a withheld 学位证 alone (§3.2: 教务处 hands out what was withheld) and
    a 2016-style refund (退费状态, cancelled from 2017, is no prerequisite of the certificates: §3.2, §3.9)."""
    lines = []
    one = next((s for s in board.students if s.withheld_degree and not s.withheld_diploma), None)
    if one is not None:
        desks = {cp.title_for(one.college): "、".join(s.name for s in cp.steps if rules.applies(s, one))
                 for cp in flow.checkpoints if cp.requires and cp.kind != "waiver"}
        lines.append(f"暂缓发证（{one.withheld_word}）：{one.name}（{one.student_no}）"
                     + "；".join(f"在{desk}领 {names}" for desk, names in desks.items() if names))
    refund = flow.refund_step(2016)
    student = next((s for s in board.students if not s.withheld), None)
    if refund is not None and student is not None:
        statuses = {s.code: Status.PASSED for cp in flow.checkpoints if not cp.requires for s in cp.steps}
        statuses[refund.code] = Status.PENDING
        decision = rules.may_set(flow, student, "degree_certificate", Status.PASSED, statuses, set(), 2016)
        outcome = "可以领证" if decision.allowed else decision.reason
        complete = "是" if rules.is_complete(flow, student, statuses, 2016) else "否（等财务处录入退费状态）"
        lines.append(f"按 2016 届流程（{refund.name}仍在使用，{refund.disabled_from} 年取消）："
                     f"其余离校点办完、只差退费的学生 → {outcome}；全部完成：{complete}")
    return lines


def run_demo(directory: Path, count: int, seed: int, console: Console) -> None:
    """Create a demo data folder; roster, feeds, waivers; two rounds of offices ticking workbooks; a summary."""
    _prepare(directory)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("生成合成学生名单", total=6)
        folder = init_folder(directory, "undergrad", f"{YEAR}届本科毕业生离校", YEAR)
        (directory / DEMO_MARK).write_text("lixiao demo\n", "utf-8")
        with (directory / SETTINGS).open("a", encoding="utf-8") as settings:
            settings.write(f"\n[delivery]\n# 每个离校点一个共享文件夹：{SHARE}/<离校点>/待办/（工作簿）和 "
                           f'交回/（交回的文件）\nshare_root = "{SHARE}"\n')
        try:
            cohort = make_cohort(count, YEAR, seed)
            inputs = directory / "演示输入"
            inputs.mkdir()
            roster_file = inputs / "学生名单.xlsx"
            roster_file.write_bytes(build_roster([roster_row(s) for s in cohort.students]))
            bar.advance(task)

            bar.update(task, description="导入学生名单")
            table = read_table(roster_file.read_bytes(), roster_file.name)
            result = validate_roster(table.headers, table.rows, folder.flow.needs_class)
            folder.store.upsert_students(result.students, source=f"roster:{roster_file.name}", operator="演示")
            bar.advance(task)

            feeds: dict[str, tuple[str, list[str], list[tuple[object, ...]]]] = {
                "library": ("图书馆导出.csv", ["学号", "借阅册数", "欠费"], [(n, b, f) for n, b, f in cohort.library]),
                "finance": ("财务欠费.csv", ["学号", "欠费金额"], [(n, a) for n, a in cohort.finance]),
                "loans": ("贷款确认名单.csv", ["身份证号", "贷款类型"], list(cohort.loans)),
            }
            clearance = folder.clearance
            reports = {}
            for kind, (name, headers, rows) in feeds.items():
                bar.update(task, description=f"应用数据源 {name}")
                path = inputs / name
                path.write_bytes(_csv(headers, rows))
                feed_table = read_table(path.read_bytes(), name)
                parsed = parse_feed(kind, feed_table.headers, feed_table.rows)
                reports[kind] = clearance.apply_feed(parsed.entries, source=f"feed:{kind}:{name}", operator="演示")
                bar.advance(task)

            bar.update(task, description="特殊离校点：欠费缓交")
            owing = [no for no, amount in cohort.finance if amount][:5]
            step = clearance.step("pay_arrears")
            for no in owing:
                student = clearance.student(no)
                clearance.waive(student, step, "欠费缓交", "特殊离校点·演示", "缓交证明（演示）")
            bar.advance(task)
            first = ["college", "student_affairs", "utilities", "dorm", "network"]

            def send_all(progress: Callable[[int, int, str], None]) -> int:
                return len(send_offices(folder, progress=progress).issued)

            def refreshed(progress: Callable[[int, int, str], None]) -> int:
                # the certificate desks' readiness changed with round 1: a fresh generation with its 可领证名单
                return len(refresh(folder, force=True, progress=progress).issued)

            round_one, issued_first = _office_round(folder, bar, seed, 1, first, send_all)
            round_two, issued_fresh = _office_round(folder, bar, seed, 2, ["certificates", "registrar"], refreshed)
            rounds = [round_one, round_two]
            board = clearance.board()
            report_task = bar.add_task("生成报表", total=1)
            index = refresh_reports(folder)
            bar.advance(report_task)
        finally:
            folder.close()

    names = {"merged": "已合并", "duplicate": "重复", "rejected": "已拒绝", "quarantined": "已隔离",
             "deferred": "稍后处理"}
    for number, outcomes in enumerate(rounds, start=1):
        returns = RichTable(title=f"第 {number} 轮：各离校点交回的工作簿")
        for column in ("文件", "结果", "记录", "拒绝", "冲突", "说明"):
            returns.add_column(column)
        for sim, outcome in outcomes:
            returns.add_row(sim.path.name, names[outcome.outcome], str(outcome.applied), str(outcome.refused),
                            str(outcome.conflicts), sim.note)
        console.print(returns)
    school = school_progress(board)
    console.print(f"\n[bold]{YEAR}届本科毕业生离校[/]：应离校人数 {school.expected} 人"
                  f"（往届 {school.expected_previous} 人），"
                  f"未完成 {school.unfinished} 人（{school.percent_unfinished:.1f}%）")
    lib, fin = reports["library"], reports["finance"]
    console.print(f"图书馆数据：通过 {lib.passed}，未通过 {lib.failed}；"
                  f"财务数据：通过 {fin.passed}，未通过 {fin.failed}；贷款确认：{reports['loans'].passed} 人")
    summary = RichTable(title="实时统计（各离校点）")
    for column in ("离校点", "应离校人数(往届)", "未完成(往届)", "未完成%"):
        summary.add_column(column, justify="right" if column != "离校点" else "left")
    for cp, _ in checkpoint_progress(folder.flow, board):
        summary.add_row(cp.name, f"{cp.expected}({cp.expected_previous})", f"{cp.unfinished}({cp.unfinished_previous})",
                      f"{cp.percent_unfinished:.0f}%")
    console.print(summary)
    waived = len(board.waived)
    failed = sum(1 for codes in board.codes if CODES[Status.FAILED] in codes)
    console.print(f"已解除限制：{waived} 人；有“未通过”步骤：{failed} 人")
    for line in manual_lines(folder.flow, board):
        console.print(line)
    example = next((s for s in board.students if s.student_no in board.waived), None)
    console.print(f"\n共享文件夹：{(directory / SHARE).resolve()}（每个离校点：待办/ 收工作簿，交回/ 放交回的文件，"
                  "交回/已处理/ 与 交回/回执/ 由系统写入）")
    console.print(f"第 1 轮签发并投递 {issued_first} 个工作簿；第 1 轮合并后前置条件有变化，"
                  f"自动为领证离校点签发新版 {issued_fresh} 个（第一张表为可领证名单）")
    console.print(f"\n数据文件夹：{directory.resolve()}")
    console.print("试试：")
    console.print(f"  lixiao --data {directory} flow show")
    if example:
        console.print(f"  lixiao --data {directory} status {example.student_no}")
    console.print(f"  lixiao --data {directory} waivers")
    console.print(f"  lixiao --data {directory} export 离校状态.xlsx")
    console.print(f"\n报表：{index}")
