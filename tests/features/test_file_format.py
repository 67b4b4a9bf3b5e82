"""Registry exports as spreadsheets write them: the separator is detected from the lines, and a file that cannot be
read gets one sentence saying what to do, never a pandas or codec error (on the sample single-event task's schema;
a real task's file read with every option is tested in its folder)."""

import pytest

from features.file_format import RegistryFileError, detect_separator
from features.registry_file import load_registry_file
from tests.sample_tasks import SINGLE, sample_tasks


@pytest.mark.parametrize(("content", "says"), [
    (b"", "the file is empty"),
    (b"  \n\n", "the file is empty"),
    (b"age_years;sex;treatment_years\n", "a header row but no patient rows"),
    (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "spreadsheet workbook (.xlsx)"),
])
def test_files_that_cannot_be_read_get_one_sentence(tmp_path, content, says):
    path = tmp_path / "registry.csv"
    path.write_bytes(content)
    with pytest.raises(RegistryFileError) as raised:
        load_registry_file(path, sample_tasks()[SINGLE].schema)
    message = str(raised.value)
    assert says in message and "\n" not in message and message.count(". ") == 0


def test_separator_detection_prefers_the_one_that_splits_every_line():
    assert detect_separator("a;b;c\n1,5;2;3\n4;5,25;6\n") == ";"
    assert detect_separator("a,b,c\n1.5,2,3\n") == ","
    assert detect_separator("a|b\n1|2\n") == "|"
    assert detect_separator("single\n1\n") == ","
