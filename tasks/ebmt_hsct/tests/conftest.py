"""The public ebmt3 extract and the registry file the adapter makes of it, loaded as ebmt_hsct loads a file: shared
by this folder's tests (module-scoped: each module reads its own)."""

import pandas as pd
import pytest

from features.ebmt_registry import ebmt3_registry_file, read_mstate_extract
from features.registry_file import load_registry_file
from features.tasks import TASKS


@pytest.fixture(scope="module")
def ebmt3() -> pd.DataFrame:
    return read_mstate_extract("ebmt3")


@pytest.fixture(scope="module")
def rfs_loaded(ebmt3, tmp_path_factory):
    path = tmp_path_factory.mktemp("ebmt") / "ebmt3.csv"
    ebmt3_registry_file(ebmt3).to_csv(path, index=False)
    return load_registry_file(path, TASKS["ebmt_hsct"].schema, TASKS["ebmt_hsct"].public_extract.drop_predictors)
