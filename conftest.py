"""Session fixtures and hooks shared by tests/ and the task folders' own tests (tasks/<task>/tests/), kept at the root
so that one definition, and so one build per session, serves both. `served_models`: champions of the test-only sample
tasks (tests/sample_tasks/) built in seconds without MLflow, for every test that only needs a served model.
`trained_store` / `trained_all_hsct`: the default cohort and seed, tuned quickly (3 trials), trained once by the
whole pipeline into a temporary store, for the tests of what training makes."""

import os

import pytest

from tests.stores import TrainedStore, small_settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# Under pytest-xdist the test workers hold the cores already: training inside a test runs its stages in sequence
# (training/parallel.py) rather than start a pool per test worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TRAIN_JOBS", "1")


# Tests that use these are slow (they train through the whole pipeline or start a real server): they must say so
# with @pytest.mark.slow, so that `make test-fast` (-m "not slow") never trains or serves.
SLOW_FIXTURES = frozenset({"trained_store", "trained_all_hsct", "live_server", "trained_live_server"})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture is set up, so an unmarked test fails at once instead of training."""
    needs = sorted(SLOW_FIXTURES & set(getattr(item, "fixturenames", ())))
    if needs and item.get_closest_marker("slow") is None:
        pytest.fail(f"uses {', '.join(needs)} (trains or starts a server) but is not marked @pytest.mark.slow",
                    pytrace=False)


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory) -> TrainedStore:
    from training.pipeline import run_training

    root = tmp_path_factory.mktemp("store")
    (root / "mlruns").mkdir()
    settings = small_settings(root)
    summary = run_training(settings)
    return TrainedStore(root, settings.tracking_uri, settings.models_dir, summary, settings)


@pytest.fixture(scope="session")
def trained_all_hsct(trained_store):
    """all_hsct trained (default cohort, 3 trials per cause) into the same store and models/ as cml_tfr."""
    from dataclasses import replace

    from training.pipeline import run_training

    settings = replace(small_settings(trained_store.root), task="all_hsct", n_patients=None)
    return run_training(settings)


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

    # pytest-xdist workers of one run share the parent of their temporary folders: the first builds, the rest reuse.
    shared = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp().parent / "served" if shared else tmp_path_factory.mktemp("served")
    return build_served_models(root)
