"""Which family to register, chosen on development data only.

Each family is refitted on every tuning fold's training part (with the tuned settings, built exactly as the main
fit) and judged by Uno's (or Wolbers') C of the main endpoint's main-horizon risk on the fold's other patients.
The held-out reporting split is never read, so the headline metrics and the gates it feeds are not the ones the
choice was made on. The boosted model's settings were tuned on these folds, so its cross-validated C is slightly
optimistic: it must beat the Cox baseline's by more than `TIE_MARGIN_C`, otherwise the baseline is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features.tasks import Task
from risk_model.bundle import ModelBundle
from training.evaluate import concordance_with_se, endpoint_risks, subset_target, uno_tau

TIE_MARGIN_C = 0.005
BASELINE = "cox_ph"


def choose_family(scores: dict[str, float], baseline: str = BASELINE) -> str:
    """The family with the best score when it beats the baseline's by more than the tie margin, else the
    baseline (an unscored family is never chosen)."""
    reference = scores.get(baseline, np.nan)
    best = max((f for f in scores if np.isfinite(scores[f])), key=lambda f: scores[f], default=baseline)
    if best != baseline and np.isfinite(reference) and scores[best] <= reference + TIE_MARGIN_C:
        return baseline
    return best


def development_concordance(
    task: Task,
    development: pd.DataFrame,
    folds: list[tuple[np.ndarray, np.ndarray]],
    refit: Callable[[str, pd.DataFrame], ModelBundle],
    families: tuple[str, ...],
) -> dict[str, float]:
    """Mean over the tuning folds of each family's C on the fold's left-out development patients."""
    schema = task.schema
    main = schema.main_horizon_months
    targets = task.endpoint_targets(development)
    scores: dict[str, list[float]] = {family: [] for family in families}
    for train, test in folds:
        fitted = {family: refit(family, development.iloc[train].reset_index(drop=True)) for family in families}
        endpoint = next(iter(fitted.values())).main_endpoint
        target = subset_target(targets[endpoint], test)
        if not np.any(np.asarray(target.code) == target.event_of_interest):
            continue
        tau = uno_tau(np.asarray(target.months, float), list(schema.horizons_months))
        test_frame = development.iloc[test].reset_index(drop=True)
        for family, bundle in fitted.items():
            risk = endpoint_risks(bundle, test_frame, np.array([float(main)]), endpoint)[endpoint][:, 0]
            scores[family].append(concordance_with_se(target, risk, tau)[0])
    return {family: float(np.nanmean(values)) if values else np.nan for family, values in scores.items()}
