"""cml_tfr's file as registry exports write it: separator, decimal mark and encoding detected (or given) and said
back; a file that cannot be read gets one sentence saying what to do, never a pandas or codec error. The reader is
general (tests/features/test_file_format.py); these checks read cml_tfr's decimals, centres and optional column."""

import numpy as np
import pandas as pd
import pytest

from features.file_format import RegistryFileError
from features.registry_file import load_registry_file
from features.task_schema import SchemaValidationError
from tasks.cml_tfr import SCHEMA as CML_TFR_SCHEMA
from tasks.cml_tfr.generator import generate_cml_tfr_cohort

NUMBERS = ["age_at_stop_years", "tki_years", "dmr_years", "months_to_relapse_or_last_pcr"]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    frame = generate_cml_tfr_cohort(80, seed=11)
    assert (frame["tki_years"] % 1 != 0).any()  # the file really carries decimals
    return frame


def european_export(cohort: pd.DataFrame, path, encoding: str, centre_prefix: str) -> pd.DataFrame:
    """What a spreadsheet in most of Europe writes: ';' between fields, decimal commas, a legacy code page."""
    export = cohort.copy()
    export["centre"] = centre_prefix + export["centre"].str[-2:]
    export.to_csv(path, sep=";", decimal=",", index=False, encoding=encoding)
    return export


def test_semicolon_decimal_comma_latin1_export_reads_and_says_how(cohort, tmp_path):
    path = tmp_path / "registre.csv"
    export = european_export(cohort, path, "latin-1", "Créteil-")
    assert b";" in path.read_bytes()[:200] and b"\xe9" in path.read_bytes()  # é in Latin-1, not UTF-8
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    described = loaded.file_format.describe()
    assert "separator ';' (semicolon, detected)" in described
    assert "decimal comma (detected)" in described
    assert "encoding Latin-1 (ISO-8859-1) (detected)" in described
    for column in NUMBERS:
        np.testing.assert_allclose(loaded.frame[column], cohort[column], rtol=1e-12, err_msg=column)
    assert set(loaded.frame["centre"]) == set(export["centre"])
    assert loaded.frame["centre"].str.startswith("Créteil-").all()


def test_windows_1252_export_is_told_apart_from_latin1(cohort, tmp_path):
    path = tmp_path / "export.csv"
    european_export(cohort, path, "cp1252", "Nord–")  # an en dash: byte 0x96, a control character in Latin-1
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert "encoding Windows-1252 (detected)" in loaded.file_format.describe()
    assert loaded.frame["centre"].str.startswith("Nord–").all()


def test_excel_unicode_text_utf16_tab_separated(cohort, tmp_path):
    path = tmp_path / "unicode.txt"
    cohort.to_csv(path, sep="\t", index=False, encoding="utf-16")
    loaded = load_registry_file(path, CML_TFR_SCHEMA)
    assert "separator '\\t' (tab, detected)" in loaded.file_format.describe()
    assert "UTF-16" in loaded.file_format.describe()
    np.testing.assert_allclose(loaded.frame["tki_years"], cohort["tki_years"])


def test_given_options_are_used_and_said_to_be_given(cohort, tmp_path):
    path = tmp_path / "registre.csv"
    european_export(cohort, path, "latin-1", "FR-")
    loaded = load_registry_file(path, CML_TFR_SCHEMA, separator="semicolon", decimal=",", encoding="latin-1")
    assert loaded.file_format.describe() == ("CSV, separator ';' (semicolon, given), decimal comma (given), "
                                             "encoding latin-1 (given)")
    np.testing.assert_allclose(loaded.frame["dmr_years"], cohort["dmr_years"])


@pytest.mark.parametrize(("options", "says"), [
    ({"separator": "tab"}, "give SEP=semicolon"),
    ({"encoding": "utf-8"}, "not valid utf-8"),
    ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
    ({"separator": "semicolon", "decimal": ";"}, "unknown decimal mark"),
])
def test_wrong_options_get_one_sentence(cohort, tmp_path, options, says):
    path = tmp_path / "registre.csv"
    european_export(cohort, path, "latin-1", "Créteil-")
    with pytest.raises(RegistryFileError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA, **options)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_header_only_parquet_gets_the_same_sentence(cohort, tmp_path):
    path = tmp_path / "registry.parquet"
    cohort.iloc[:0].to_parquet(path, index=False)
    with pytest.raises(RegistryFileError, match="no patient rows"):
        load_registry_file(path, CML_TFR_SCHEMA)


def test_unquoted_decimal_commas_in_a_comma_separated_file(cohort, tmp_path):
    path = tmp_path / "broken.csv"
    lines = [",".join(cohort.columns)] + [",".join(str(v).replace(".", ",") for v in row)
                                          for row in cohort.astype(object).to_numpy()]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RegistryFileError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    assert "separator ',' (comma)" in str(raised.value) and "SEP=semicolon" in str(raised.value)


def test_a_dotted_number_in_a_decimal_comma_file_is_ambiguous(cohort, tmp_path):
    path = tmp_path / "registre.csv"
    export = cohort.copy()  # float columns: written with decimal commas
    export["bcr_abl1_halving_time_days"] = pd.Series([None] * len(export), dtype=object)
    export.loc[6, "bcr_abl1_halving_time_days"] = "1.500"  # 1500 with a thousands dot, or 1.5?
    export.to_csv(path, sep=";", decimal=",", index=False)
    with pytest.raises(SchemaValidationError) as raised:
        load_registry_file(path, CML_TFR_SCHEMA)
    [problem] = raised.value.problems
    assert (problem.row, problem.column, problem.value) == (7, "bcr_abl1_halving_time_days", "1.500")
    assert "decimals with a comma" in problem.rule
