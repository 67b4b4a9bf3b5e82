"""cml_tfr's data dictionary states its units and their accepted variants, which fields are required, and how a
missing optional one is handled."""

from features.data_dictionary import data_dictionary_markdown


def test_dictionary_states_units_required_and_missing_handling():
    text = data_dictionary_markdown("cml_tfr")
    tki = next(line for line in text.splitlines() if line.startswith("| `tki_years` |"))
    assert "| years |" in tki and "| yes |" in tki and "`tki_months`, `tki_days` (converted to years)" in tki
    nk = next(line for line in text.splitlines() if line.startswith("| `nk_cell_level` |"))
    assert "| no |" in nk and "missing-indicator" in nk
