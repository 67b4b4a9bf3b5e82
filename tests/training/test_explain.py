"""Per-run explanation plots: every endpoint at every reliable horizon gets a beeswarm, a mean-|contribution| bar
chart and table, and dependence plots of its three leading predictors, titled in clinical words with units.

One small Cox bundle of the test-only competing-risk sample task (tests/sample_tasks/: two competing causes and an
event-free endpoint; 600 patients, background cut to 10 rows, horizons 12, 24 and one past the last reliable month)
explains 30 new patients once for the module.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.task_schema import validate_frame
from risk_model.wording import endpoint_title
from tests.sample_tasks import COMPETING, SINGLE, sample_tasks
from training import pipeline
from training.explain import (
    LEADING_PREDICTORS,
    MAX_EXPLAINED_PATIENTS,
    POINTS,
    _category_labels,
    explained_horizons,
    explanation_plots,
    explanation_sample,
    explanation_title,
)
from training.pipeline import complete_bundle, fit_family

SEED = 11
TASK = sample_tasks()[COMPETING]
SCHEMA = TASK.schema
ENDPOINTS = ("relapse", "nrm", "event_free")
KINDS = ("beeswarm", "bar", "dependence")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bundle():
    development = validate_frame(TASK.generate_cohort(600, SEED), SCHEMA)
    bundle = complete_bundle(fit_family("cox_ph", TASK, development, {}, SEED), development, SCHEMA, SEED)
    bundle.background, bundle.background_weights = bundle.background[:10], bundle.background_weights[:10]
    bundle.horizons_months = [12, 24, int(bundle.last_reliable_month) + 12]
    assert bundle.last_reliable_month > 24
    return bundle


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    frame = validate_frame(TASK.generate_cohort(30, SEED + 1), SCHEMA)
    return frame[SCHEMA.predictor_names]


@pytest.fixture(scope="module")
def drawn(bundle, patients, tmp_path_factory):
    """The files written, and each saved figure's titles and axis labels (recorded as it is saved)."""
    from matplotlib.figure import Figure

    folder, texts, save = tmp_path_factory.mktemp("explanations"), {}, Figure.savefig

    def recording_save(figure, path, *args, **kwargs):
        texts[Path(path)] = [t for ax in figure.axes for t in (ax.get_title(), ax.get_xlabel(), ax.get_ylabel())]
        return save(figure, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", recording_save)
        patch.setenv("TRAIN_JOBS", "1")  # recorded in this process: no worker processes (training/parallel.py)
        written = explanation_plots(bundle, patients, folder)
    return folder, written, texts


def table_of(folder: Path, endpoint: str, horizon: int) -> pd.DataFrame:
    return pd.read_csv(folder / endpoint / f"{horizon}m_mean_abs_contribution.csv")


@pytest.mark.slow  # `drawn` draws every plot of a run
def test_every_endpoint_and_reliable_horizon_has_its_plots_and_table(drawn):
    folder, written, _ = drawn
    expected = {folder / "mean_abs_contribution.csv"}
    for endpoint in ENDPOINTS:
        for h in (12, 24):
            leading = table_of(folder, endpoint, h)["predictor"].iloc[:LEADING_PREDICTORS]
            expected |= {folder / endpoint / f"{h}m_{name}" for name in
                         ("beeswarm.png", "bar.png", "mean_abs_contribution.csv",
                          *(f"dependence_{p}.png" for p in leading))}
    assert set(written) == expected
    assert {p for p in folder.rglob("*") if p.is_file()} == expected
    assert len(expected) == 1 + len(ENDPOINTS) * 2 * (3 + LEADING_PREDICTORS)


@pytest.mark.slow
def test_horizons_past_the_last_reliable_month_are_skipped(bundle, drawn, tmp_path):
    folder, _, _ = drawn
    beyond = bundle.horizons_months[-1]
    assert explained_horizons(bundle) == [12, 24]
    assert not list(folder.rglob(f"{beyond}m_*"))
    assert explanation_plots(replace(bundle, horizons_months=[beyond]), pd.DataFrame(), tmp_path) == []


@pytest.mark.slow  # draws a run's plots at one horizon
def test_a_run_set_to_the_main_horizon_only_explains_that_horizon_alone(bundle, patients, tmp_path, monkeypatch):
    """`TrainSettings.plots = "main"`: every endpoint's plots at the main horizon, none at the others."""
    monkeypatch.setenv("TRAIN_JOBS", "1")
    main = replace(bundle, main_horizon_months=24)
    written = explanation_plots(main, patients, tmp_path, main_horizon_only=True)
    drawn = {p.relative_to(tmp_path).parent.name for p in written if p.name.startswith("24m_beeswarm")}
    assert drawn == set(ENDPOINTS)
    assert not list(tmp_path.rglob("12m_*")) and all(p.name.startswith("24m_") for p in tmp_path.rglob("*.png"))


@pytest.mark.slow
def test_plots_are_real_pngs(drawn):
    folder, written, _ = drawn
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len(ENDPOINTS) * 2 * (2 + LEADING_PREDICTORS)
    for path in pngs:
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 200, (path, image.size)


@pytest.mark.parametrize(("task", "endpoint", "horizon", "words"), [
    (COMPETING, "relapse", 24, "Relapse incidence at 24 months"),
    (COMPETING, "event_free", 12, "Event-free survival at 12 months"),
    (COMPETING, "nrm", 60, "Non-relapse mortality at 60 months"),
    (SINGLE, "relapse_free", 6, "Relapse-free survival at 6 months"),
])
def test_title_names_endpoint_horizon_and_units(task, endpoint, horizon, words):
    # The words are the task spec's plot titles, carried by the bundle's schema.
    title = explanation_title(endpoint_title(sample_tasks()[task].schema.to_json(), endpoint), horizon,
                              "mean |contribution| per predictor")
    assert title.startswith(words) and "mean |contribution| per predictor" in title
    assert "percentage points of probability" in title


def test_a_bundle_without_the_spec_wording_gets_plain_words():
    assert endpoint_title({"endpoints": {"graft_failure": "incidence"}}, "graft_failure") == "Graft failure"


@pytest.mark.slow
def test_every_saved_figure_is_titled_and_labelled_with_units(bundle, drawn):
    _, written, texts = drawn
    units = {p["name"]: p["unit"] for p in bundle.schema["predictors"]}
    for path in (p for p in written if p.suffix == ".png"):
        endpoint, (horizon, kind) = path.parent.name, path.stem.split("_", 1)
        words = f"{endpoint_title(bundle.schema, endpoint)} at {horizon[:-1]} months"
        title, *labels = texts[path]
        assert words in title and POINTS in title, (path, title)
        assert any(POINTS in label for label in labels), (path, labels)
        if kind.startswith("dependence_"):
            name = kind.removeprefix("dependence_")
            assert labels[0] == (f"{name} ({units[name]})" if units[name] else name), (path, labels)


@pytest.mark.slow
def test_bar_table_ranks_the_recomputed_mean_absolute_contributions(bundle, patients, drawn):
    folder, _, _ = drawn
    sample = explanation_sample(patients)
    for endpoint, h in (("nrm", 24), ("event_free", 12), ("relapse", 12)):
        values, _ = bundle.contributions(sample, h, endpoint)
        mean_abs = 100 * np.abs(values).mean(axis=0)
        table = table_of(folder, endpoint, h)
        assert list(table["predictor"]) == [bundle.feature_names[i] for i in np.argsort(-mean_abs, kind="stable")]
        np.testing.assert_allclose(table["mean_abs_contribution_pp"], np.sort(mean_abs)[::-1], atol=1e-4)
        assert list(table["rank"]) == list(range(1, len(bundle.feature_names) + 1))
    combined = pd.read_csv(folder / "mean_abs_contribution.csv")
    assert len(combined) == len(ENDPOINTS) * 2 * len(bundle.feature_names)
    pd.testing.assert_frame_equal(
        combined.query("endpoint == 'event_free' and horizon_months == 12").reset_index(drop=True),
        table_of(folder, "event_free", 12))


def test_sample_is_capped_and_the_same_every_time():
    frame = pd.DataFrame({"x": np.arange(500)})
    sample = explanation_sample(frame)
    assert len(sample) == MAX_EXPLAINED_PATIENTS and sample["x"].is_unique
    pd.testing.assert_frame_equal(sample, explanation_sample(frame))
    assert list(sample["x"]) != list(range(MAX_EXPLAINED_PATIENTS))  # drawn, not the first rows
    pd.testing.assert_frame_equal(explanation_sample(frame.iloc[:50]), frame.iloc[:50])


def test_categories_keep_schema_order_and_show_missing():
    flags = _category_labels(pd.Series([1.0, 0.0, np.nan]), {"kind": "boolean"})
    assert list(flags) == ["yes", "no", "missing"] and list(flags.cat.categories) == ["no", "yes", "missing"]
    donors = _category_labels(pd.Series(["haplo", None, "MSD"]),
                              {"kind": "category", "categories": ["MSD", "MUD_8_8", "haplo"]})
    assert list(donors) == ["haplo", "missing", "MSD"]
    assert list(donors.cat.categories) == ["MSD", "MUD_8_8", "haplo", "missing"]


def test_pipeline_logs_explanations_and_the_main_beeswarm(bundle, patients, tmp_path):
    """The pipeline's call site: the folder under `explanations/`, the main beeswarm also under `plots/`."""
    calls = []

    class Recorder:
        def log_artifacts(self, local: str, artifact_path: str) -> None:
            calls.append((artifact_path, sorted(str(p.relative_to(local)) for p in Path(local).rglob("*.png"))))

        def log_artifact(self, local: str, artifact_path: str) -> None:
            calls.append((artifact_path, [Path(local).name]))

    only_main = replace(bundle, horizons_months=[24], schema={**bundle.schema, "endpoints": {"relapse": "incidence"}})
    pipeline._log_plots(Recorder(), SCHEMA, only_main, patients, tmp_path)
    (folder, files), (plots, [summary]) = calls
    assert folder == "explanations" and "relapse/24m_beeswarm.png" in files and "relapse/24m_bar.png" in files
    assert plots == "plots" and summary == "shap_summary_relapse_24m.png"
    assert (tmp_path / summary).read_bytes() == (tmp_path / "explanations/relapse/24m_beeswarm.png").read_bytes()
