# Two commands on a fresh machine: `make run` serves the app, `make test` runs the checks.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install prepare run test lint browser-deps

# `make run` and `make test` started at once: one installs, the other waits and finds it done
LOCK := $(shell command -v flock >/dev/null 2>&1 && echo flock $(VENV).lock)

# torch alone first, so the pinned CPU build is chosen before anything can ask for it
$(STAMP): requirements.txt
	$(LOCK) sh -c '[ $(STAMP) -nt requirements.txt ] || { \
		{ test -x $(PY) || python3 -m venv $(VENV); } && \
		$(PY) -m pip install --quiet "$$(grep -m1 "^torch==" requirements.txt)" && \
		$(PY) -m pip install --quiet -r requirements.txt && touch $(STAMP); }'

install: $(STAMP)

prepare: install
	$(PY) -m core prepare --if-needed

run: prepare
	$(VENV)/bin/streamlit run app.py

browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install browser-deps lint
	$(PY) -m pytest
