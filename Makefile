# moodstream: `make run` starts the daemon, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# setuptools says "Editable installation" as a warning on every editable install of a mapped
# package (moodstream_models = models/); it is information only (setuptools' InformationOnly).
PIP    := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip --disable-pip-version-check -q
RUN_ARGS ?=

.PHONY: run lint test test-fast system-packages bench models install-service uninstall-service clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Stamps make re-runs quick: pip runs again only when pyproject.toml changed.
$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.all: pyproject.toml | $(PY)
	$(PIP) install -e '.[train,dev,pi,plot]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(VENV)/bin/moodstream run --source auto $(RUN_ARGS)

# System packages first (.ci/packages): installed when run as root, else the apt-get line is
# printed and the tests that need them skip, saying which.
system-packages:
	@.ci/system-packages

# Lint, format and types first (seconds, cached), then the tests.
lint: $(VENV)/.all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# musicnn's pinned wheel (weights only, never installed), by version and sha256: trainer/families/musicnn/network.py
MUSICNN := cache/musicnn/MSD_musicnn/.index
$(MUSICNN): | $(VENV)/.all
	$(PY) -m trainer fetch-musicnn

test: system-packages lint $(MUSICNN)
	$(PY) -m pytest

test-fast: system-packages lint $(MUSICNN)
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.all
	$(PY) -m bench

models: $(VENV)/.all $(MUSICNN)
	$(PY) -m trainer make-models

# The Pi service (as root: `sudo make install-service`); see systemd/README.md.
install-service:
	systemd/install.sh $(INSTALL_ARGS)

uninstall-service:
	systemd/install.sh --uninstall $(INSTALL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
