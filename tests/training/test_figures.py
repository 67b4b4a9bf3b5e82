"""A run's figures are written as matplotlib's tight layout writes them, without its extra layout pass."""

from pathlib import Path

import numpy as np

from training.figures import pyplot, save_figure


def drawn() -> object:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax in axes:
        ax.scatter(np.arange(20), np.sin(np.arange(20)), c=np.arange(20))
        ax.set(title="a long title that tight layout has to make room for", xlabel="months", ylabel="risk (%)")
    return fig


def test_the_file_is_what_tight_layout_and_savefig_write(tmp_path: Path) -> None:
    plain = drawn()
    plain.tight_layout()
    plain.savefig(tmp_path / "plain.png", dpi=100)
    fig = drawn()
    assert save_figure(fig, tmp_path / "saved.png", dpi=100) == tmp_path / "saved.png"
    assert (tmp_path / "saved.png").read_bytes() == (tmp_path / "plain.png").read_bytes()
    assert fig.get_layout_engine() is None  # savefig does no second layout pass
    assert not pyplot().fignum_exists(fig.number)  # the figure is freed


def test_the_beeswarm_is_the_same_figure_every_time(tmp_path: Path) -> None:
    """shap jitters the beeswarm's dots with NumPy's global generator: the run seeds it, so a run's figure
    repeats, and leaves the generator as it found it."""
    import pandas as pd

    from training.explain import Explained, _beeswarm

    rng = np.random.default_rng(3)
    patients = pd.DataFrame({"age": rng.uniform(20, 70, 80), "mrd": rng.choice(["low", "high"], 80)})
    predictors = [{"name": "age", "kind": "number", "unit": "years"}, {"name": "mrd", "kind": "category"}]
    explained = Explained("relapse", "incidence", 24, rng.normal(size=(80, 2)), 30.0, patients, predictors,
                          "cox_ph", "Relapse incidence")
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    first, second = (_beeswarm(explained, tmp_path / f"{n}.png").read_bytes() for n in ("first", "second"))
    assert first == second
    assert np.array_equal(np.random.get_state()[1], before)
