"""What a return is before it merges: its bytes and origin (``Incoming``), and step 3 of the pipeline — the
sandboxed parse, the token, the structure and the baseline (``checked``) — giving a ``CheckedReturn`` or the
refusal."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lixiao.core.clearance.issuance import Baseline, BaselineError
from lixiao.core.storage.ledger import Origin
from lixiao.core.storage.signing import digest_text
from lixiao.core.storage.store import WorkbookRow
from lixiao.sync.datafolder import DataFolder
from lixiao.workbooks.returned import Returned, returned_from_wire
from lixiao.workbooks.sandbox import parse_untrusted

from .outcomes import Outcome


@dataclass(frozen=True, slots=True)
class Incoming:
    """The bytes of one return and where they lie: ``path`` (None for a mail attachment), and whether lixiao may
    move or remove that file once the return is decided (inbox/ and held/ files; never a file named on the
    command line or lying in an office's share)."""

    name: str  # safe_name of the file (or attachment)
    data: bytes
    path: Path | None
    movable: bool
    origin: Origin

    @property
    def hash(self) -> str:
        """The content hash that keys the ledger."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class CheckedReturn:
    """A returned file that passed every file-level check, ready to merge."""

    item: Incoming
    returned: Returned
    workbook: WorkbookRow
    baseline: Baseline

    @property
    def name(self) -> str:
        """The return's safe name."""
        return self.item.name

    @property
    def hash(self) -> str:
        """The return's content hash."""
        return self.item.hash


def checked(folder: DataFolder, item: Incoming, key: bytes) -> CheckedReturn | tuple[Outcome, str, str]:
    """Step 3: the parse in the sandbox, then the token, the structure and the baseline; the refusal otherwise."""
    parsed = parse_untrusted(item.data, key)
    if not parsed.ok or parsed.returned is None:
        outcome = Outcome.QUARANTINED if parsed.code in ("timeout", "parser_crashed") else Outcome.REJECTED
        return (outcome, parsed.code, parsed.message)
    try:
        returned = returned_from_wire(parsed.returned)
    except ValueError as exc:
        return (Outcome.REJECTED, "parser_failed", str(exc))
    problem = _token_problem(folder, returned) or _structure_problem(returned)
    if problem:
        return (Outcome.REJECTED, *problem)
    payload = returned.token.payload or {}
    workbook = folder.store.workbook(str(payload["workbook_id"]))
    assert workbook is not None  # _token_problem: the token names a registered workbook
    mismatch = (Outcome.REJECTED, "baseline_mismatch",
                "工作簿的签发记录与数据库不一致（数据库可能从旧备份恢复）；请重新签发")
    try:
        expected = payload.get("baseline_hash")
        stored = workbook.baseline  # canonical JSON as written at issue: its own SHA-256 is the digest
        if hashlib.sha256(stored.encode("utf-8")).hexdigest() != expected and digest_text(stored) != expected:
            return mismatch
        baseline = Baseline.from_text(workbook.baseline)
    except (ValueError, BaselineError):
        return mismatch
    return CheckedReturn(item, returned, workbook, baseline)


def _token_problem(folder: DataFolder, returned: Returned) -> tuple[str, str] | None:
    token = returned.token
    if token.status in ("missing", "malformed"):
        return ("no_token", "不是本系统签发的工作簿，或隐藏的“_lixiao”标识表被删除；请交回系统发给您的原文件")
    if token.status != "valid":
        return ("bad_signature",
                "工作簿标识的签名无效：标识被修改，或文件来自另一个数据文件夹；请交回系统发给您的原文件")
    payload = token.payload or {}
    if payload.get("session") != folder.session_name:
        return ("other_session", f"工作簿属于离校会话“{payload.get('session')}”，不是当前的“{folder.session_name}”")
    if not folder.store.workbook(str(payload.get("workbook_id", ""))):
        return ("unknown_workbook", "签名有效，但数据库中没有这个工作簿的签发记录（数据库可能从旧备份恢复）")
    if payload.get("checkpoint") not in {cp.code for cp in folder.flow.checkpoints}:
        return ("unknown_checkpoint", f"当前流程中没有离校点 {payload.get('checkpoint')}")
    return None


def _structure_problem(returned: Returned) -> tuple[str, str] | None:
    """A valid token on content that is not that workbook (its sheet, every step column, or the 行校验 column
    missing)."""
    payload = returned.token.payload or {}
    missing_columns = {a.step for a in returned.anomalies if a.code == "column_missing"}
    if any(a.code in ("sheet_missing", "header_missing") and a.sheet in ("办理", "解除限制")
           for a in returned.anomalies):
        return ("structure_mismatch", "工作簿的“办理”表或表头被删除或改名；请交回系统发给您的原文件")
    steps = payload.get("steps", {})
    if payload.get("kind") == "office" and isinstance(steps, dict) and steps \
            and missing_columns >= set(steps.values()):
        return ("token_mismatch", "工作簿标识与内容不符（标识可能是从另一份工作簿复制来的）；请交回系统发给您的原文件")
    if any(a.code == "row_key_missing" for a in returned.anomalies):
        return ("row_key_missing", "工作簿的“行校验”列被删除或改名，无法确认每一行的勾选属于哪名学生；"
                "请交回系统发给您的原文件（可以排序、筛选，但不要删除列）")
    return None
