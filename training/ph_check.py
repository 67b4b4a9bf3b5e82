"""The proportional-hazards check of the Cox family: scaled Schoenfeld residuals against the rank of event time
(Grambsch and Therneau 1994), per predictor (its columns together) and global, for every cause.

With U the sum over events of (rank - mean rank) times the Schoenfeld residual (the event's columns minus the
risk set's exp(margin)-weighted mean), I the information (the sum of the risk sets' weighted covariances) and d
events, the slope of the scaled residuals on the rank is d I^-1 U / sum (rank - mean rank)^2, and its score test
is T = d / sum (rank - mean rank)^2 * (I^-1 U)_P' [(I^-1)_PP]^-1 (I^-1 U)_P, chi-square on |P| columns; P = all
columns is the global test. A small p says that predictor's hazard ratio changes with time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from features.tasks import Task
from risk_model.bundle import ModelBundle
from training.families import training_strata


def proportional_hazards_check(bundle: ModelBundle, task: Task, development: pd.DataFrame
                               ) -> dict[str, dict[str, Any]]:
    """{cause: {"global": {"statistic", "df", "p"}, "predictors": {name: {...}}}} for a Cox bundle."""
    targets = task.cause_targets(development)
    checks = {}
    for cause, model in bundle.causes.items():
        if model.family != "cox_ph":
            continue
        matrix = model.preprocessor.transform(development)
        # A stratum column has no coefficient: its risk sets lie within a stratum instead (training/families.py).
        varying = (matrix.std(axis=0) > 0) & ~np.isin(model.preprocessor.sources, list(task.schema.strata) or [""])
        time, event = (np.asarray(v, dtype=float) for v in targets[cause])
        x, sources = matrix[:, varying], np.array(model.preprocessor.sources)[varying]
        checks[cause] = schoenfeld_tests(x, x @ np.asarray(model.coefficients)[varying], time, event, sources,
                                         training_strata(development, task.schema))
    return checks


def _risk_set_terms(x: np.ndarray, margin: np.ndarray, time: np.ndarray, event: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schoenfeld residuals of the events, their times, and the information, over one set of risk sets."""
    order = np.argsort(time, kind="stable")
    x, margin, time, event = x[order], margin[order], time[order], event[order]
    weight = np.exp(margin - margin.max())
    # Risk-set sums from each position to the end (time >= t), read at each event's first tied position.
    s0 = np.cumsum(weight[::-1])[::-1]
    s1 = np.cumsum((weight[:, None] * x)[::-1], axis=0)[::-1]
    events = np.flatnonzero(event == 1)
    first = np.searchsorted(time, time[events], side="left")
    mean = s1[first] / s0[first, None]
    s2 = np.cumsum((weight[:, None, None] * x[:, :, None] * x[:, None, :])[::-1], axis=0)[::-1][first]
    information = (s2 / s0[first, None, None] - mean[:, :, None] * mean[:, None, :]).sum(axis=0)
    return x[events] - mean, time[events], information


def schoenfeld_tests(x: np.ndarray, margin: np.ndarray, time: np.ndarray, event: np.ndarray, sources: np.ndarray,
                     strata: np.ndarray | None = None) -> dict[str, Any]:
    """`strata`: each patient's stratum of a stratified model, whose risk sets lie within a stratum."""
    groups = [np.arange(len(time))] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    terms = [_risk_set_terms(x[g], margin[g], time[g], event[g]) for g in groups if event[g].any()]
    residual = np.concatenate([t[0] for t in terms])
    event_times = np.concatenate([t[1] for t in terms])
    information = np.sum([t[2] for t in terms], axis=0)
    rank = stats.rankdata(event_times)
    centred = rank - rank.mean()
    inverse = np.linalg.pinv(information)
    slope = inverse @ (centred @ residual)
    scale = len(event_times) / np.sum(centred**2)

    def test(columns: np.ndarray) -> dict[str, float]:
        block = inverse[np.ix_(columns, columns)]
        statistic = float(scale * slope[columns] @ np.linalg.pinv(block) @ slope[columns])
        return {"statistic": statistic, "df": int(len(columns)), "p": float(stats.chi2.sf(statistic, len(columns)))}

    predictors = {name: test(np.flatnonzero(sources == name)) for name in dict.fromkeys(sources)}
    return {"global": test(np.arange(x.shape[1])), "predictors": predictors}
