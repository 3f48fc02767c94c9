"""The page safe to publish, rebuilt after one merge at 30,000 students with every key already derived (the
daemon's refresh after a batch): ``.venv/bin/python -m bench.public_page [--students N] [--repeats N]``.

The first build derives every key (at 1,000 iterations here, to keep the set-up short: a cached rebuild does not
derive anything, so its cost does not depend on the iterations); each measured rebuild follows a merge-sized
change (one class's electricity step passed) and goes through sync/publishing.publish_public_page, the call the
daemon makes. Prints the seconds (min / median / max) and the records written.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.run import cohort_folder, late_session
from lixiao.core.manual.model import Status
from lixiao.sync.datafolder import open_folder
from lixiao.sync.publishing import choose_public, publish_public_page


def _merge(root: Path, round_: int) -> None:
    """One return's worth of changes: a class's 清理电费 passed or failed, as a merge writes it."""
    folder = open_folder(root)
    try:
        members = [s.student_no for s in folder.store.students()][round_ * 30:(round_ + 1) * 30]
        status = Status.PASSED if round_ % 2 else Status.FAILED
        with folder.store.transaction():
            folder.store.write_statuses([(no, "electricity", status, "", "applied") for no in members],
                                        source="bench", operator="基准")
    finally:
        folder.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lixiao-bench-public-") as scratch:
        root = Path(scratch) / "data"
        cohort_folder(root, args.students)
        late_session(root)
        choose_public(root, True, 1000)
        folder = open_folder(root)
        started = time.monotonic()
        first = publish_public_page(folder)
        print(f"first build: {time.monotonic() - started:.1f} s, {first.derived if first else 0} keys derived")
        folder.close()
        seconds = []
        for round_ in range(args.repeats):
            _merge(root, round_)
            folder = open_folder(root)
            try:
                started = time.monotonic()
                made = publish_public_page(folder)
                seconds.append(time.monotonic() - started)
            finally:
                folder.close()
            assert made is not None and made.derived == 0 and made.records == args.students
        print(f"rebuild after one merge, {args.students} students, keys cached: min {min(seconds):.2f} s, "
              f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s ({args.repeats} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
