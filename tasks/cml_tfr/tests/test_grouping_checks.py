"""A cml_tfr registry with many small centres is a real registry: its centre codes are not refused as identifiers."""

from features.registry_file import load_registry_file
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort


def test_a_registry_with_many_small_centres_passes(tmp_path):
    """100 patients from 45 hospitals (most with 1-3 patients, median 2) is a real registry, not identifiers."""
    frame = generate_cml_tfr_cohort(100, seed=2)
    centres = [f"H{i:02d}" for i in range(45)] + [f"H{i % 20:02d}" for i in range(55)]
    path = tmp_path / "small_centres.csv"
    frame.assign(centre=centres).to_csv(path, index=False)
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert loaded.frame["centre"].nunique() == 45
