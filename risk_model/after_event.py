"""Survival after the first competing event (relapse), for overall survival: OS = LFS + P(relapsed and alive).

The bundle's `post_relapse_survival` holds a baseline survival curve on time since the event (`months`,
`survival`) and, when training could fit one, a small Cox model (`model`): coefficients of numeric predictors
(a missing value takes the training mean, `fill`) and of the time from time zero to the event, all centred at
their training means (`reference_lp`, `event_time_reference`), so the curve is the survival of a patient at the
means. A bundle without `model` (older bundles, or too few deaths after the event) uses the curve for everyone.

P(relapsed and alive at t | x) = sum over event times u <= t of dCIR(u | x) S(t - u | x, u), with
S(s | x, u) = S0(s) ^ exp(b.x + g.(u - u_ref) - reference): one pass per month over (members x patients x
event times), no loop over patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from risk_model.preprocessing import PatientEncoding

AFTER_EVENT = "after_first_event"  # the margin of the post-event model, beside the causes' margins
BLOCK_CELLS = 4_000_000  # survival values computed at once (patients x event times x months), bounds memory
MAX_LOG_SCALE = 30.0  # keeps exp() finite and positive for an extreme patient (0 * inf would give NaN)


def has_model(post: dict[str, Any] | None) -> bool:
    return bool(post and post.get("model"))


def encoding_weights(post: dict[str, Any], encoding: PatientEncoding) -> tuple[np.ndarray, float]:
    """The post-event linear predictor as weights on the patient encoding (value slot: the coefficient; missing
    slot: the coefficient times the fill value) and the offset that centres it at the training means."""
    model = post["model"]
    weights = np.zeros(encoding.width)
    for predictor in model["predictors"]:
        start, missing = encoding.slots[predictor["name"]]
        weights[start] = predictor["coef"]
        weights[missing] = predictor["coef"] * predictor["fill"]
    return weights, -float(model["reference_lp"])


def post_event_margin(post: dict[str, Any], encoding: PatientEncoding, encoded: np.ndarray) -> np.ndarray:
    weights, offset = encoding_weights(post, encoding)
    return encoded @ weights + offset


def _baseline_at(post: dict[str, Any], since: np.ndarray) -> np.ndarray:
    """S0 at each time since the event (1 before the first step, 0 for a negative time: the event not yet)."""
    months, survival = np.asarray(post["months"], float), np.asarray(post["survival"], float)
    index = np.searchsorted(months, since, side="right") - 1
    return np.where(since >= 0, np.where(index >= 0, survival[np.maximum(index, 0)], 1.0), 0.0)


def baseline_tables(post: dict[str, Any], grid: np.ndarray, months: np.ndarray) -> dict[str, np.ndarray]:
    """What `alive_after_event` needs of the grid and the months alone (no patient): a bundle caches it."""
    baseline = _baseline_at(post, months[None, :] - grid[:, None])  # grid x months
    tables = {"baseline": baseline}
    if has_model(post):
        model = post["model"]
        # Nobody alive (or the event still to come) is a 0/1 mask after the power, not log(0) = -inf: exp(-inf) is
        # far slower than exp of a finite number in numpy.
        possible = baseline > 0
        tables.update(shift=model["event_time_coef"] * (grid - model["event_time_reference"]), possible=possible,
                      log_baseline=np.log(np.where(possible, baseline, 1.0)))
    return tables


def alive_after_event(
    post: dict[str, Any], grid: np.ndarray, months: np.ndarray, increments: np.ndarray, margin: np.ndarray | None,
    tables: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """P(event by t and alive at t) (members x patients x months) from the event's increments on `grid`
    (members x patients x grid) and the post-event margin (members x patients; None: the curve alone).
    `tables`: `baseline_tables(post, grid, months)`, when the caller keeps them."""
    tables = tables or baseline_tables(post, grid, months)
    if margin is None or not has_model(post):
        return increments @ tables["baseline"]
    shift, possible, log_baseline = tables["shift"], tables["possible"], tables["log_baseline"]
    # Every ensemble member shares the post-event model: one survival table per patient serves all members
    # (the explanation's finite differences move this margin per row, and take the general path).
    shared = bool(np.all(margin == margin[:1]))
    rows = margin[:1] if shared else margin
    scale = np.exp(np.clip(rows[..., None] + shift, -MAX_LOG_SCALE, MAX_LOG_SCALE))  # rows x patients x grid
    out = np.empty((*increments.shape[:-1], len(months)))
    block = max(1, BLOCK_CELLS // max(1, scale.size))
    for first in range(0, len(months), block):
        cells = slice(first, first + block)
        # Event times after a block's last month add nothing to it (the event is still to come: `possible` is 0
        # there), so the powers are taken up to that month only: about half the cells for the curve's months.
        upto = int(np.searchsorted(grid, np.max(months[cells]), side="right"))
        # In place: the powers are the largest arrays of an explanation, and each temporary costs as much again.
        alive = np.multiply(log_baseline[None, None, :upto, cells], scale[..., :upto, None])
        np.exp(alive, out=alive)
        alive *= possible[:upto, cells]
        steps = increments[..., :upto]
        if shared:  # patients x members x grid @ patients x grid x months
            out[..., first : first + block] = np.swapaxes(np.swapaxes(steps, 0, 1) @ alive[0], 0, 1)
        else:
            out[..., first : first + block] = (steps[..., None, :] @ alive)[..., 0, :]
    return out
