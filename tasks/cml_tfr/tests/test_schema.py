"""The cml_tfr schema: centre and country group patients (validation across centres) and never enter a model."""

from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA


def test_cml_centre_and_country_are_grouping_fields():
    assert {"centre", "country"} <= set(CML_TFR_SCHEMA.grouping_names)
    assert all(not CML_TFR_SCHEMA.predictor(name).required for name in ("centre", "country"))
