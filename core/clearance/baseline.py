"""The issued values a return is merged against: each step cell as issued, remarks, identity, batch groups and
waivers, signed by their digest (pure data)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lixiao.core.manual.model import Status
from lixiao.core.storage.signing import digest


class BaselineError(ValueError):
    """A stored baseline is not what lixiao writes (the store was edited, or is from an incompatible version)."""


@dataclass(frozen=True, slots=True)
class IssuedCell:
    """One step cell as issued: what it showed (a tick, empty, 未通过, 可办可不办), and the cell's version in the store
    at that moment."""

    status: Status
    version: int

    @property
    def ticked(self) -> bool:
        """True when the cell was issued ticked."""
        return self.status is Status.PASSED

    def as_json(self) -> list[object]:
        """[ticked, version], with the status third only where it is neither (so older baselines keep their hash)."""
        if self.status in (Status.PASSED, Status.PENDING):
            return [self.ticked, self.version]
        return [False, self.version, self.status.value]

    @classmethod
    def from_json(cls, raw: list[object]) -> IssuedCell:
        """The inverse of ``as_json``; ValueError/TypeError/IndexError on anything else."""
        if len(raw) > 2:
            status = Status(str(raw[2]))
            if status not in ISSUED_STATUSES:
                raise ValueError(status)
        else:
            status = Status.PASSED if bool(raw[0]) else Status.PENDING
        version = raw[1]
        if not isinstance(version, int):
            raise TypeError(version)
        return cls(status, version)


ISSUED_STATUSES = frozenset({Status.PASSED, Status.PENDING, Status.FAILED, Status.OPTIONAL})


@dataclass(frozen=True, slots=True)
class Baseline:
    """The issued values a return is merged against (signed: the token carries the hash of ``as_json()``)."""

    cells: dict[str, dict[str, IssuedCell]]  # 学号 → step → issued cell (applicable steps only)
    remarks: dict[str, str]  # 学号 → 备注 as issued
    identity_columns: tuple[str, ...]
    identity: dict[str, tuple[str, ...]]  # 学号 → identity cells as issued
    batch: dict[str, dict[str, dict[str, bool]]]  # mode → group → step → every member already passed
    groups: dict[str, dict[str, tuple[str, ...]]]  # mode → group → its members' 学号
    waivers: dict[str, tuple[bool, str]]  # "学号|step" → (lifted at issue, reason)

    def as_json(self) -> dict[str, object]:
        """The JSON form whose canonical text is stored and whose digest the token signs."""
        return {
            "cells": {no: {step: c.as_json() for step, c in cells.items()}
                      for no, cells in self.cells.items()},
            "remarks": self.remarks,
            "identity_columns": list(self.identity_columns),
            "identity": {no: list(values) for no, values in self.identity.items()},
            "batch": self.batch,
            "groups": {mode: {g: list(members) for g, members in groups.items()}
                       for mode, groups in self.groups.items()},
            "waivers": {k: [lifted, reason] for k, (lifted, reason) in self.waivers.items()},
        }

    def digest(self) -> str:
        """The hash the token carries (baseline_hash)."""
        return digest(self.as_json())

    @classmethod
    def from_text(cls, text: str) -> Baseline:
        """The baseline of a registered workbook from its stored canonical JSON; BaselineError if malformed."""
        try:
            raw = json.loads(text)
            issued: dict[tuple[object, ...], IssuedCell] = {}  # a few distinct cells, 30,000 × steps uses of them

            def cell(value: list[object]) -> IssuedCell:
                key = tuple(value)
                found = issued.get(key)
                if found is None:
                    found = issued[key] = IssuedCell.from_json(value)
                return found

            return cls(
                cells={str(no): {str(step): cell(c) for step, c in cells.items()}
                       for no, cells in raw["cells"].items()},
                remarks={str(k): str(v) for k, v in raw["remarks"].items()},
                identity_columns=tuple(str(c) for c in raw.get("identity_columns", [])),
                identity={str(no): tuple(str(v) for v in values) for no, values in raw["identity"].items()},
                batch={str(mode): {str(g): {str(s): bool(t) for s, t in ticks.items()} for g, ticks in groups.items()}
                       for mode, groups in raw.get("batch", {}).items()},
                groups={str(mode): {str(g): tuple(str(n) for n in members) for g, members in groups.items()}
                        for mode, groups in raw.get("groups", {}).items()},
                waivers={str(k): (bool(v[0]), str(v[1])) for k, v in raw.get("waivers", {}).items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise BaselineError(f"工作簿的签发记录无法读取（{type(exc).__name__}）") from None
