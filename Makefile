# Relapse-risk prediction service. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python
TASK ?=
DATA ?=
# How a CSV registry file is written, when detection should not decide: SEP=semicolon DECIMAL=, ENCODING=cp1252
SEP ?=
DECIMAL ?=
ENCODING ?=
FORMAT_OPTIONS = $(if $(SEP),--sep '$(SEP)') $(if $(DECIMAL),--decimal '$(DECIMAL)') $(if $(ENCODING),--encoding '$(ENCODING)')
DROP ?=
HOST ?= 127.0.0.1
PORT ?= 3000

# Embedded defaults: a SQLite MLflow store inside mlruns/, no server; nothing calls out.
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export MLFLOW_LOGGING_LEVEL := WARNING
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
# `make ui` and `make tracking-server` start no MLflow job runners: they run GenAI scorers and online-scoring jobs,
# which this project has none of, and their consumer processes slowed each server start (timed by hand with curl).
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
export BENTOML_DO_NOT_TRACK := True
export PYTHONPATH := $(CURDIR)
export PATH := $(CURDIR)/.tools/bin:$(PATH)
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help install train validate task data-dictionary serve ui test test-fast test-browser test-postgres lint format

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3.11 -m venv .tools || python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Compiled at install: every process the tests start (pytest-xdist workers, training's worker pool, the command-line
# and fresh-import subprocesses) then reads bytecode instead of compiling the libraries again, ~8 s of CPU each
# where Python may not write its own cache (PYTHONDONTWRITEBYTECODE, a read-only environment).
.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python 3.11 --compile-bytecode
	@touch $@

install: .venv/.installed ## install Python 3.11 dependencies from uv.lock (uv included)

train: install ## build the default cohort, tune, train, evaluate, explain, register, promote (TASK=, DATA=, DROP=a,b, SEP=, DECIMAL=, ENCODING=, TRIALS=, JOBS=, PLOTS=all|main|none, STUDY=, STORAGE=)
	@mkdir -p mlruns models data
	$(PY) -m training.cli train $(if $(TASK),--task $(TASK)) $(if $(DATA),--data '$(DATA)') $(FORMAT_OPTIONS) $(if $(DROP),--drop-predictor $(DROP)) $(if $(TRIALS),--trials $(TRIALS)) $(if $(JOBS),--jobs $(JOBS)) $(if $(PLOTS),--plots $(PLOTS)) $(STUDY_OPTIONS)

# A shared Optuna study (README "Past one machine"): the trainer and any `make tune-worker` join it. Empty = in memory.
STUDY ?=
STORAGE ?=
JOBS ?=
# Optuna trials at once (threads); 1 (the default) keeps tuning, and every served number, repeatable for a seed.
TUNING_JOBS ?=
export TUNING_JOBS
STUDY_OPTIONS = $(if $(STUDY),--study '$(STUDY)') $(if $(STORAGE),--storage '$(STORAGE)')
.PHONY: tune-worker
tune-worker: install ## run tuning trials in a shared study from any host: STUDY=, STORAGE=postgresql://..., TASK= [DATA=, TRIALS=, JOBS=]
	@mkdir -p data
	$(PY) -m training.cli tune-worker $(if $(TASK),--task $(TASK)) $(if $(DATA),--data '$(DATA)') $(FORMAT_OPTIONS) $(if $(DROP),--drop-predictor $(DROP)) $(if $(TRIALS),--trials $(TRIALS)) $(if $(JOBS),--jobs $(JOBS)) $(STUDY_OPTIONS)

validate: install ## check a registry file without training: TASK=..., DATA=file.csv|.parquet [DROP=a,b SEP= DECIMAL= ENCODING=] (exit 0 = usable)
	@$(PY) -m training.cli validate $(if $(TASK),--task $(TASK)) $(if $(DATA),--data '$(DATA)') $(FORMAT_OPTIONS) $(if $(DROP),--drop-predictor $(DROP))

task: install ## draft tasks/NAME/task.toml from a registry file for review: NAME=, DATA=, TIME=, EVENT= (0/1, or cause codes 1..K), CAUSES= (a cause column beside a 0/1 EVENT)
	@$(PY) -m training.cli task --name '$(NAME)' --data '$(DATA)' --time '$(TIME)' --event '$(EVENT)' $(if $(CAUSES),--causes '$(CAUSES)') $(FORMAT_OPTIONS)

data-dictionary: install ## print a task's data dictionary (TASK=...); without TASK, rewrite docs/data-dictionary/
	@$(PY) -m training.cli data-dictionary $(if $(TASK),--task $(TASK))

serve: install ## serve the champion models on http://127.0.0.1:3000 (HOST=, PORT= to change)
	$(PY) -m serving.launch --host $(HOST) --port $(PORT)

ui: install ## open the MLflow UI on http://127.0.0.1:5000 over the local store
	@$(PY) -m training.mlflow_store
	.venv/bin/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

# An MLflow tracking server for runs from several hosts (README "Past one machine"): runs and models in PostgreSQL,
# artifacts proxied by the server into ARTIFACTS (a path on this host, or a shared one: NFS, s3://...). Clients set
# MLFLOW_TRACKING_URI=http://<this host>:$(TRACKING_PORT). HOST=0.0.0.0 opens it; ALLOWED_HOSTS= names it for clients
# beyond private addresses. The default store: database mlflow on this host's PostgreSQL over its socket.
TRACKING_STORE ?= postgresql:///mlflow
ARTIFACTS ?= $(CURDIR)/mlruns/server-artifacts
TRACKING_PORT ?= 5000
TRACKING_WORKERS ?= 2
ALLOWED_HOSTS ?=
.PHONY: tracking-server
tracking-server: install ## MLflow tracking server on PostgreSQL for several hosts (TRACKING_STORE=, ARTIFACTS=, HOST=, TRACKING_PORT=, ALLOWED_HOSTS=)
	@mkdir -p '$(ARTIFACTS)'
	.venv/bin/mlflow server --backend-store-uri '$(TRACKING_STORE)' --serve-artifacts --artifacts-destination '$(ARTIFACTS)' \
	  --host $(HOST) --port $(TRACKING_PORT) --workers $(TRACKING_WORKERS) $(if $(ALLOWED_HOSTS),--allowed-hosts '$(ALLOWED_HOSTS)')

# The boosted fits on a dask cluster (README "Past one machine"): a scheduler, workers started from a checkout of
# this project on each host (they run its code), and DASK_SCHEDULER=tcp://<scheduler host>:$(DASK_PORT) for the
# trainer. HOST= is the address this process listens on (other hosts must reach it). Unset: fits in this process.
DASK_PORT ?= 8786
DASK_THREADS ?= 1
DASK_SCHEDULER ?=
export DASK_SCHEDULER
.PHONY: dask-scheduler dask-worker
dask-scheduler: install ## a dask scheduler for the boosted fits of several hosts (HOST=, DASK_PORT=8786)
	.venv/bin/dask scheduler --host $(HOST) --port $(DASK_PORT) --no-dashboard

dask-worker: install ## a dask worker on this host joining DASK_SCHEDULER=tcp://host:8786 (HOST= its address, DASK_THREADS=)
	@test -n "$(DASK_SCHEDULER)" || { echo "usage: make dask-worker DASK_SCHEDULER=tcp://<scheduler host>:$(DASK_PORT) [HOST=<this host's address>]" >&2; exit 2; }
	.venv/bin/dask worker $(DASK_SCHEDULER) --host $(HOST) --nthreads $(DASK_THREADS) --nworkers 1

# One pytest worker per core (pytest-xdist), a test file's tests on one worker so its module fixtures fit once.
TEST_WORKERS ?= auto
# `make test`: the fast tier first, on every core (a failure there stops before any training), then the slow tier,
# also on every core: loadgroup keeps the trained store's readers on one worker (so it is trained once) and every
# other file's tests together (conftest.py at the root); its log names the 15 slowest tests (where the time goes).
# The project's own modules compiled once for all the test processes (a second when nothing changed).
COMPILE_SOURCES = $(PY) -m compileall -q features risk_model serving training tasks tests benchmarks > /dev/null
# pytest rewrites the asserts of every test module and of its plugins' packages (hypothesis, schemathesis, anyio)
# in each worker, ~7 s of CPU per process; it keeps the result only where Python may write bytecode, so the tests
# may, whatever the environment says: the second tier and every later run read it.
PYTEST = PYTHONDONTWRITEBYTECODE= $(PY) -m pytest

test: install test-browser test-postgres ## install what the tests need (the page test's browser, PostgreSQL) and run both tiers
	$(COMPILE_SOURCES)
	$(PYTEST) -m "not slow" -n $(TEST_WORKERS) --dist loadfile
	$(PYTEST) -m slow -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=15

test-fast: install ## unit tests and the in-process API on champions built in seconds: no training, server or browser
	$(COMPILE_SOURCES)
	$(PYTEST) -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# What the tests need from Debian: root with apt-get installs it; anyone else gets the one command to run, never a
# skipped test. $(call debian_package,<package>,<probe that succeeds when installed>,<which tests need it>)
define debian_package
	@$(2) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's $(1) for $(3) (apt-get, about 30 s)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	  else \
	    echo "Needed by $(3): Debian's $(1). Run: sudo apt-get install -y $(1)  then make test again." >&2; \
	    exit 2; \
	  fi; }
endef

# The page test drives Debian's chromium (no browser download by playwright).
test-browser:
	$(call debian_package,chromium,command -v chromium,the page test)

# The scale-out tests start their own PostgreSQL (tests/postgres.py) from Debian's package.
test-postgres:
	$(call debian_package,postgresql,ls /usr/lib/postgresql/*/bin/initdb,the scale-out tests)

lint: install ## ruff
	.venv/bin/ruff check features tasks risk_model training serving tests benchmarks conftest.py

VERSION ?=
.PHONY: promote rollback
promote: install ## make a registered VERSION of TASK the champion by hand, same export (TASK=, VERSION=)
	@test -n "$(TASK)" -a -n "$(VERSION)" || { echo "usage: make promote TASK=<task> VERSION=<n>"; exit 2; }
	$(PY) -m training.registry_cli promote --task $(TASK) --version $(VERSION)

rollback: install ## give the champion alias of TASK back to the previous champion (TASK=)
	@test -n "$(TASK)" || { echo "usage: make rollback TASK=<task>"; exit 2; }
	$(PY) -m training.registry_cli rollback --task $(TASK)

OUT ?=
EXPLAIN ?=
.PHONY: score
score: install ## score a file offline with the champions: make score TASK=cml_tfr DATA=in.csv OUT=out.parquet [EXPLAIN=1]
	@test -n "$(TASK)" -a -n "$(DATA)" -a -n "$(OUT)" || { echo "usage: make score TASK=<task> DATA=<in.csv|.parquet> OUT=<out.parquet|.csv> [EXPLAIN=1]" >&2; exit 2; }
	$(PY) -m serving.score --task $(TASK) --data $(DATA) --out $(OUT) $(if $(EXPLAIN),--explain)

QUICK ?=
.PHONY: bench bench-explain soak bento
bench: install ## this service vs a bare FastAPI app vs `mlflow models serve`, on loopback (TASK=, QUICK=1)
	$(PY) -m benchmarks.serve_bench $(if $(TASK),--task $(TASK)) $(if $(QUICK),--quick)

bench-explain: install ## per-patient cost of an explanation beside the prediction, in process (TASK=)
	$(PY) -m benchmarks.explain_cost $(if $(TASK),--task $(TASK))

soak: install ## this service at concurrency 32 for 60 s: errors (must be 0) and memory growth (TASK=)
	$(PY) -m benchmarks.soak $(if $(TASK),--task $(TASK))

.PHONY: bench-concordance
bench-concordance: install ## time per call of the concordance with its SE at 5,000 / 20,000 / 180,000 patients
	$(PY) -m benchmarks.concordance_scaling

SIZES ?=
TRIALS ?=
.PHONY: bench-train
bench-train: install ## time, CPU and peak memory of each training stage at 2,000 / 20,000 / 180,000 patients (TASK=, SIZES=, TRIALS=, JOBS=)
	$(PY) -m benchmarks.train_bench $(if $(TASK),--task $(TASK)) $(if $(SIZES),--sizes $(SIZES)) \
	  $(if $(TRIALS),--trials $(TRIALS)) $(if $(JOBS),--jobs $(JOBS))

bento: install ## build a Bento: the service, its code, the current champions; requirements from uv.lock
	$(UV) export --frozen --no-hashes --no-dev --no-emit-project --quiet --format requirements-txt -o requirements-bento.txt
	$(PY) -m benchmarks.bento_ignore models
	.venv/bin/bentoml build .
