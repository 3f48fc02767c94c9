# Two commands for a new user: `make demo` (install + lixiao demo) and `make test` (install + linters + all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the real-client tests drive (LibreOffice through UNO) and a CJK font for rendering;
# systemd for systemd-analyze, which verifies the unit `lixiao watch --unit` prints (not in Debian's containers).
DEB_PACKAGES := libreoffice-calc python3-uno fonts-noto-cjk chromium dovecot-imapd systemd

.PHONY: install bytecode system-deps demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The bytecode of lixiao's own modules, brought up to date (compileall skips what is current): an editable install
# leaves none, and where PYTHONDONTWRITEBYTECODE is set every command would compile them again (≈ 0.3 s).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q core workbooks sync reports >/dev/null

install: bytecode

demo: bytecode
	$(BIN)/lixiao demo

lint: $(STAMP)
	$(BIN)/ruff check .
	@# mypy sees the installed layout (lixiao.core → core/) through a link farm
	mkdir -p .typecheck/lixiao
	for p in core workbooks sync reports; do ln -sfn ../../$$p .typecheck/lixiao/$$p; done
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p lixiao

system-deps:
	@if command -v soffice >/dev/null && command -v chromium >/dev/null && test -x /usr/sbin/dovecot && command -v systemd-analyze >/dev/null && /usr/bin/python3 -c 'import uno' 2>/dev/null \
		&& fc-list :lang=zh 2>/dev/null | grep -q .; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES); \
	else echo "real-client tests need: sudo apt-get install $(DEB_PACKAGES) (they skip without them, fail on CI)"; fi

test: system-deps lint bytecode
	$(BIN)/pytest

# The fast suite's data folders live in RAM where there is a /dev/shm (each test commits with fsync).
FAST_TMP := $(if $(wildcard /dev/shm),--basetemp=/dev/shm/lixiao-test-fast,)

test-fast: bytecode
	$(BIN)/pytest -m "not slow" -q -n 2 $(FAST_TMP)

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache .ruff_cache lixiao-demo
