# The front door (README): `make demo` and `make test` set up what they need, then run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint unit fuzz deb rpm freebsd-pkg webmin matrix bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup-host.sh
	bash scripts/setup-host.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

demo: setup
	$(BIN)/kavsetup demo

lint: setup
	$(BIN)/ruff check .

unit: setup
	$(BIN)/python -m pytest -q

test: lint unit

# Issue 19 item 2: >= 100 000 generated inputs per fuzz target (tests/fuzz, profiles in
# tests/support/fuzz.py; `make test` runs the same targets with a few hundred, CI with a few thousand).
# FUZZ_TARGETS narrows it, e.g. `make fuzz FUZZ_TARGETS=tests/fuzz/test_fuzz_config.py`.
FUZZ_TARGETS ?= tests/fuzz
fuzz: setup
	KAV4MS_FUZZ=long $(BIN)/python -m pytest -q -p no:randomly --hypothesis-show-statistics $(FUZZ_TARGETS)

deb: setup
	bash pkg/deb/build.sh

# The RPM (issue 17): rpmbuild from Debian's rpm package, then rpmlint (docs/packaging.md).
rpm: setup
	bash pkg/rpm/build.sh

# The FreeBSD package in pkg(8)'s format, built here and checked by its manifest reader.
freebsd-pkg: setup
	$(BIN)/python pkg/freebsd/build.py

# The Webmin module (guide 4.3): a tar.gz of pkg/webmin/kav4mailservers, as Webmin installs modules.
WBM := dist/kav4mailservers.wbm.gz
webmin:
	mkdir -p dist
	tar -C pkg/webmin --owner=0 --group=0 --sort=name -czf $(WBM) kav4mailservers
	@echo "built $(WBM)"

matrix: setup deb
	$(BIN)/python tests/distro-matrix/run.py

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .ruff_cache
