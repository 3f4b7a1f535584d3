# PACS Portal — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-scaleout setup migrate viewer bench clean help

help:
	@echo "make run   - set up everything and start the portal (web + workers + receiver + demo PACS)"
	@echo "make test  - run the whole test suite (installs Orthanc, DCMTK and Chromium if missing)"
	@echo "make test-scaleout - worker cluster and APIs on a throw-away PostgreSQL + Redis broker"
	@echo "make bench - benchmarks against DCMTK (bench/)"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@scripts/system-deps.sh run
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	@touch $@

setup: $(VENV)/.installed
	@$(PY) scripts/ensure-env.py

# The OHIF viewer at /viewer/: the pinned npm package (vendor/viewer/package-lock.json), laid out in the
# git-ignored VIEWER_ROOT (apps/viewer/site.py). Nothing is fetched when the portal runs.
VIEWER_ROOT ?= vendor/viewer/site
$(VIEWER_ROOT)/index.html: vendor/viewer/package-lock.json apps/viewer/site.py | $(VENV)/.installed
	@scripts/system-deps.sh viewer
	cd vendor/viewer && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	$(PY) -m apps.viewer.site --site $(VIEWER_ROOT)

viewer: $(VIEWER_ROOT)/index.html

migrate: setup viewer
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

run: migrate
	$(PY) manage.py ensure_admin
	$(PY) manage.py runportal

# The suite on TEST_WORKERS pytest-xdist processes (2: this project's machines have 2 cores; most tests
# wait on Orthanc, DCMTK or subprocesses). Each worker has its own Orthancs, DATA_DIR and test database.
# --dist worksteal: each worker starts on its own half of the suite in order and takes over part of the
# other's rest when it runs out, so a module's tests mostly stay on one worker and its module-scoped
# fixtures (an Orthanc with a large study, the portal's set-up) are made once (the default hands the
# first quarter of the tests out one by one, alternating).
TEST_WORKERS ?= 2
test: $(VENV)/.installed viewer
	@scripts/system-deps.sh test
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# The scale-out stack (README "Scaling out"): the same tests on PostgreSQL with the Redis broker.
test-scaleout: $(VENV)/.installed
	@scripts/system-deps.sh test
	scripts/with-postgres-redis.sh $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal tests/jobs tests/retrieval/test_api.py tests/servers/test_api.py \
		tests/imports/test_dedup.py tests/metrics/test_collector.py tests/notify/test_operators.py

bench: $(VENV)/.installed
	@scripts/system-deps.sh test
	$(PY) bench/retrieve.py
	$(PY) bench/retrieve.py --instances 2000 --no-get
	$(PY) bench/photos.py
	$(PY) bench/send.py
	$(PY) bench/access.py
	$(PY) bench/receiver.py
	$(PY) bench/caselist.py
	$(PY) bench/deliver.py
	$(PY) bench/import.py

clean:
	rm -rf $(VENV) data vendor/viewer/node_modules vendor/viewer/site
