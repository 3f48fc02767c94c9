"""The cost of integrity on a late-season store: the write guard at open (cache hit, cache miss) and a full
`lixiao verify`. Usage: python -m bench.verify_cost [DIR] [--students N]; builds DIR like P4 "late session" when it
has no store yet (30,000 students: ≈540,000 audit events, ≈270 MB). Prints min/median/max of 3."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lixiao.core.storage.store import CHECK_CACHE
from lixiao.sync.datafolder import open_folder

from .run import cohort_folder, late_session


def timed(fn: Callable[[], object], setup: Callable[[], None] | None = None, times: int = 3) -> list[float]:
    """Seconds of ``fn`` over ``times`` runs, ``setup`` before each run (not timed)."""
    seconds = []
    for _ in range(times):
        if setup:
            setup()
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def open_close(root: Path, write: bool) -> None:
    """open_folder and close, nothing else."""
    open_folder(root, write=write).close()


def verify_command(root: Path) -> None:
    """`lixiao verify` as a user runs it (interpreter start included)."""
    done = subprocess.run([sys.executable, "-m", "lixiao.sync.cli", "--data", str(root), "verify"],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stdout + done.stderr)


def daemon_check(root: Path) -> None:
    """What lixiao watch runs at start and every [watch] verify_every_minutes: verify's checks, in process."""
    from lixiao.sync.takeback.integrity import check_folder

    folder = open_folder(root, write=False)
    try:
        if check_folder(folder).damage:
            raise RuntimeError("the late-session store does not verify")
    finally:
        folder.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", nargs="?", type=Path)
    parser.add_argument("--students", type=int, default=30_000)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="lixiao-verify-")) / "late"
    if not (root / "store.db").exists():
        cohort_folder(root, args.students)
        late_session(root)
    open_close(root, True)  # migrate (a migration changes the files: the next open checks again)
    open_close(root, True)  # record the check cache
    rows = {
        "open, write=False (no guard)": timed(lambda: open_close(root, False)),
        "open, write=True, .check hit": timed(lambda: open_close(root, True)),
        "open, write=True, .check miss (quick_check + replay)": timed(
            lambda: open_close(root, True), setup=lambda: (root / CHECK_CACHE).unlink(missing_ok=True)),
        "lixiao verify (whole command)": timed(lambda: verify_command(root)),
        "the daemon's periodic check (check_folder)": timed(lambda: daemon_check(root)),
    }
    for name, seconds in rows.items():
        print(f"{name:52} min {min(seconds):7.3f} s  median {statistics.median(seconds):7.3f} s  "
              f"max {max(seconds):7.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
