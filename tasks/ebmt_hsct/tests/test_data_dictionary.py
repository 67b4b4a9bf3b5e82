"""ebmt_hsct's data dictionary states its event time's unit variants, the public extract's caveat and the extract's
columns it drops."""

from features.data_dictionary import data_dictionary_markdown


def test_dictionary_states_unit_variants_the_caveat_and_the_dropped_columns():
    rfs = data_dictionary_markdown("ebmt_hsct")
    assert "`rfs_days`, `rfs_years` (converted to months)" in rfs
    assert "No clinical conclusions should be drawn from these data" in rfs
    assert "| prtime, prstat | (dropped) |" in rfs
