"""The boosted fits on a dask.distributed cluster (`xgboost.dask`), for cohorts past one machine.

Chosen by configuration: `DASK_SCHEDULER=tcp://host:8786` sends the xgboost fits of the pipeline (final fits,
validation refits, bootstrap replicates) to that cluster; unset, everything fits in this process as before. The
early-stopped tuning fits stay where the trial runs: xgboost refuses to evaluate the Cox partial likelihood
distributed (`cox-nloglik`), and tuning scales out through tune-workers on one Optuna study instead.

A cohort too large for one machine is read in partitions (`read_partitions`: parquet or CSV, any number of files)
and fitted by
`XGBoostCoxFamily.fit_partitions`: each partition becomes model-matrix rows on the worker that holds it (the
boosted family's encoding depends on the schema alone, so no pass over the data is needed to fit it), and only
the margins, times and events come back for the Breslow baseline.

What a cluster changes: xgboost's `survival:cox` gradient uses the risk sets of the rows on each worker, so with
several workers the fit is a Cox partial likelihood stratified by worker shard (each shard a random sample of the
cohort when partitions are, so the same target, estimated with smaller risk sets; the pipeline's in-memory fits
are cut into one block of consecutive rows per worker). With one worker holding all partitions the booster is the
local one. tests/training/test_dask_fit.py states the tolerances.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

SCHEDULER_ENV = "DASK_SCHEDULER"


def scheduler_address() -> str | None:
    """The configured dask scheduler (tcp://host:port), None for fits in this process (the default)."""
    return os.environ.get(SCHEDULER_ENV) or None


@functools.cache
def cluster_client(address: str) -> Any:
    """One client per scheduler for this process (connecting costs a round of handshakes)."""
    from distributed import Client

    return Client(address, set_as_default=False)


def read_partitions(paths: str | Sequence[str], blocksize: str = "64MB") -> Any:
    """A cohort as a dask DataFrame, one partition per parquet row group or CSV block: never whole in memory.
    The files must already hold the task's columns and units (a validated export, `make validate`)."""
    import dask.dataframe as dd

    first = paths if isinstance(paths, str) else paths[0]
    if str(first).endswith(".parquet") or os.path.isdir(first):
        return dd.read_parquet(paths, split_row_groups=True)
    return dd.read_csv(paths, blocksize=blocksize)


def model_matrix(
    parts: Any,
    transform: Callable[[pd.DataFrame], np.ndarray],
    columns: list[str],
    label_of: Callable[[pd.DataFrame], np.ndarray],
) -> tuple[Any, Any]:
    """The model matrix and labels, partition by partition, as dask DataFrame and Series."""

    def matrix(part: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(transform(part), columns=columns, index=part.index)

    def label(part: pd.DataFrame) -> pd.Series:
        return pd.Series(label_of(part), index=part.index, dtype=float)

    meta = pd.DataFrame({column: pd.Series(dtype=float) for column in columns})
    return parts.map_partitions(matrix, meta=meta), parts.map_partitions(label, meta=pd.Series(dtype=float))


def from_arrays(matrix: np.ndarray, label: np.ndarray, client: Any) -> tuple[Any, Any]:
    """An in-memory model matrix cut into one row block per worker (the pipeline's fits on a cluster)."""
    import dask.array as da

    workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    rows = max(1, -(-len(matrix) // workers))
    return da.from_array(matrix, chunks=(rows, matrix.shape[1])), da.from_array(label, chunks=rows)


def train_on_cluster(
    client: Any,
    params: dict[str, Any],
    train: tuple[Any, Any],
    rounds: int,
) -> Any:
    """`xgboost.dask.train` on (matrix, label) dask collections; returns the booster (a plain xgboost.Booster)."""
    import xgboost.dask as dxgb

    with client.as_current():  # xgboost.dask looks the client up as the current one
        dtrain = dxgb.DaskDMatrix(client, *train, missing=np.nan)
        output = dxgb.train(
            client,
            {k: v for k, v in params.items() if k != "nthread"},  # each dask worker's own threads (DASK_THREADS=)
            dtrain,
            num_boost_round=rounds,
            verbose_eval=False,
        )
    booster = output["booster"]
    # Named columns of a partitioned frame would name the booster's features; the local fits' boosters (and the
    # bundle, tree SHAP, serving) take unnamed matrices in the preprocessor's column order.
    booster.feature_names, booster.feature_types = None, None
    return booster


def predict_margin(client: Any, booster: Any, matrix: Any) -> np.ndarray:
    """Margins of a partitioned model matrix, computed on the workers, gathered here (one float per patient)."""
    import xgboost.dask as dxgb

    with client.as_current():
        return np.asarray(client.compute(dxgb.predict(client, booster, matrix, output_margin=True)).result())
