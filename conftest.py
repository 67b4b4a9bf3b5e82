"""Session fixtures and hooks shared by tests/ and the task folders' own tests (tasks/<task>/tests/), kept at the root
so that one definition, and so one build per session, serves both. `served_models`: champions of the test-only sample
tasks (tests/sample_tasks/) built in seconds without MLflow, for every test that only needs a served model.
`trained_store` / `competing_store`: the sample tasks (single-event, competing-risk) at their default cohort and
seed, tuned quickly (3 trials), trained once by the whole pipeline into a temporary store, for the tests of what
training makes. Their readers register the sample tasks (`sample_tasks`) where they serve or promote them."""

import os


def _own_cores_per_test_worker() -> None:
    """Each pytest-xdist worker on its own share of the cores, its thread pools (xgboost, OpenMP, BLAS) sized to
    that share. Otherwise every worker's pools start a thread per core of the machine, and threads spin-waiting
    for a core another worker holds made a 100-round boosted fit take 13 times as long as alone. Before numpy or
    xgboost load (their pools read the environment and the affinity once); the processes a test starts (servers,
    training pools) inherit the share."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    available = sorted(os.sched_getaffinity(0))
    index = int(worker.removeprefix("gw"))
    share = available[index::count] or [available[index % len(available)]]
    os.sched_setaffinity(0, share)
    for pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[pool] = str(len(share))


_own_cores_per_test_worker()

import pytest  # noqa: E402  (after the worker's cores are set)

# The fuzzing test's body lives in a module it imports when it runs (hypothesis and schemathesis stay out of the
# fast tier); its asserts still get pytest's messages.
pytest.register_assert_rewrite("tests.serving.fuzzing")

from tests.stores import TrainedStore, competing_settings, small_gates, small_settings, tracking_store  # noqa: E402

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# Under pytest-xdist the test workers hold the cores already: training inside a test runs its stages in sequence
# (training/parallel.py) rather than start a pool per test worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TRAIN_JOBS", "1")


# Tests that use these are slow (they train through the whole pipeline or start a real server): they must say so
# with @pytest.mark.slow, so that `make test-fast` (-m "not slow") never trains or serves.
SLOW_FIXTURES = frozenset({"trained_store", "competing_store", "live_server"})


STORE_FIXTURES = frozenset({"trained_store", "competing_store"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for `--dist loadgroup` (the slow tier on several workers): the readers of one of the session's
    trained stores run on one worker, which trains that store once and whose tests change it in turn (a second run,
    a failed gate, promote and rollback: each put back as it was); the two stores are two groups, trained at once on
    two workers. Every other test stays with its file, as with loadfile, so a module's fixtures (a server, a
    training) are made once. Before pytest-xdist reads the marks (tryfirst).

    Tests marked `starts_first` (one runs minutes alone) go to the front, so that the slow tier, which hands out
    its groups in collection order (`--no-loadscope-reorder`), starts them at once and the other worker fills the
    time around them; started last, one of them ran on alone for three minutes after the rest had finished."""
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)  # stable: the rest keep their order
    if not config.pluginmanager.has_plugin("xdist"):  # -p no:xdist: no such mark
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            stores = sorted(STORE_FIXTURES & set(getattr(item, "fixturenames", ())))
            group = "+".join(stores) or item.location[0]
            item.add_marker(pytest.mark.xdist_group(group))
            if hasattr(config, "workerinput") and config.getvalue("loadgroup"):
                _put_group_in_id(item, group)


def _put_group_in_id(item: pytest.Item, group: str) -> None:
    """loadgroup's scheduler reads a test's group from its id (`<id>@<group>`), which pytest-xdist 3.8 writes to
    `item._nodeid`; pytest 9 keeps the id in `item._id` instead, so without this each test is its own group and
    every module fixture and session store is built again on each worker that runs one of its tests. Upstream:
    pytest-dev/pytest-xdist issue 1386 (fix proposed in pull request 1388); drop this once a release has it."""
    if not hasattr(item, "_id") or item.nodeid.endswith(f"@{group}"):
        return  # pytest 8: xdist's own suffix takes effect
    from _pytest.nodes import coerce_node_id

    item._id = coerce_node_id(f"{item.nodeid}@{group}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture is set up, so an unmarked test fails at once instead of training."""
    needs = sorted(SLOW_FIXTURES & set(getattr(item, "fixturenames", ())))
    if needs and item.get_closest_marker("slow") is None:
        pytest.fail(
            f"uses {', '.join(needs)} (trains or starts a server) but is not marked @pytest.mark.slow", pytrace=False
        )


def train_store(root, settings) -> TrainedStore:
    from tests.sample_tasks import registered
    from training.pipeline import run_training

    tracking_store(root)
    gates = small_gates()
    with registered():  # only while training: the readers register them for their own module
        summary = run_training(settings, gates=gates)
    return TrainedStore(root, settings.tracking_uri, settings.models_dir, summary, settings, gates)


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> TrainedStore:
    """The single-event sample task trained into a store of its own."""
    root = tmp_path_factory.mktemp("store")
    return train_store(root, small_settings(root))


@pytest.fixture(scope="session")
def competing_store(tmp_path_factory) -> TrainedStore:
    """The competing-risk sample task trained into a store of its own (nothing reads both)."""
    root = tmp_path_factory.mktemp("competing_store")
    return train_store(root, competing_settings(root))


@pytest.fixture(scope="module")
def sample_tasks():
    """The test-only sample tasks (tests/sample_tasks/) in the task registry for one module: an app built while
    they are registered serves their routes."""
    from tests.sample_tasks import registered

    with registered() as tasks:
        yield tasks


@pytest.fixture(scope="session")
def served_models(tmp_path_factory):
    """Champions of the sample tasks (tests/sample_tasks/) in a models/ folder (tests/served_models.py); copy it
    before changing it."""
    from tests.served_models import build_served_models

    # pytest-xdist workers of one run share the parent of their temporary folders: each champion is built by one.
    shared = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp().parent / "served" if shared else tmp_path_factory.mktemp("served")
    return build_served_models(root)
