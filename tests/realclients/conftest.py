"""Real clients (LibreOffice): present on CI, where a missing tool fails the run instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3, which has the uno module (python3-uno)


def _missing_libreoffice() -> str:
    if not shutil.which("soffice"):
        return "soffice not found (apt-get install libreoffice-calc)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import uno"], capture_output=True, check=False) \
        if Path(SYSTEM_PYTHON).exists() else None
    if probe is None or probe.returncode != 0:
        return "Debian python3 cannot import uno (apt-get install python3-uno)"
    return ""


@pytest.fixture(scope="session")
def libreoffice() -> str:
    """Path of soffice; fails under CI=true when LibreOffice or its UNO bridge is missing, skips elsewhere."""
    missing = _missing_libreoffice()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real-client test needs LibreOffice on CI: {missing}")
        pytest.skip(missing)
    return shutil.which("soffice") or "soffice"


from .mailservers import mail_servers, mail_user  # noqa: E402, F401
