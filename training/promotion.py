"""The promotion gate (clarifications §5) and the export of a champion bundle to `models/`.

Absolute gates at the main horizon: calibration slope and O/E within [0.8, 1.25], lower 95 % bound of Uno's C
above 0.5, and net benefit above treat-all and treat-none somewhere in the threshold range. Against a champion
trained on the same data: a paired bootstrap of delta-C on the new held-out data; promote when its lower bound
is above -0.01 and the new version is better on C or IBS.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import EndpointTarget
from training.bundle import ModelBundle
from training.evaluate import endpoint_uno_c, evaluate_bundle, net_benefit

SLOPE_BOUNDS = (0.8, 1.25)
OE_BOUNDS = (0.8, 1.25)
MIN_DELTA_C_LOWER = -0.01
BOOTSTRAP_DRAWS = 200
DCA_THRESHOLDS = np.round(np.arange(0.05, 0.61, 0.01), 2)
CHAMPION_FILE = "champion.json"


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    gates: dict[str, Any] = field(default_factory=dict)


def bootstrap_indices(frame: pd.DataFrame, draws: int, seed: int) -> list[np.ndarray]:
    """Resample centres (patients when there are fewer than 5 centres) with replacement."""
    rng = np.random.default_rng(seed)
    centres = frame["centre"].astype(str).to_numpy() if "centre" in frame and frame["centre"].notna().all() else None
    if centres is None or len(np.unique(centres)) < 5:
        return [rng.integers(0, len(frame), len(frame)) for _ in range(draws)]
    groups = {c: np.flatnonzero(centres == c) for c in np.unique(centres)}
    names = list(groups)
    return [np.concatenate([groups[names[i]] for i in rng.integers(0, len(names), len(names))])
            for _ in range(draws)]


def _main_risk(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    return bundle.event_probability(frame, np.array([bundle.main_horizon_months]))[:, 0]


def bootstrap_uno_c(risks: list[np.ndarray], target: EndpointTarget, horizons: list[int],
                    indices: list[np.ndarray]) -> np.ndarray:
    """Uno's C of each model's risk on each bootstrap draw (draws x models), held-out predictions, no refit."""
    values = []
    for rows in indices:
        draw = EndpointTarget(target.months[rows], target.code[rows], target.event_of_interest, target.competing)
        if not np.any(draw.code == draw.event_of_interest):
            continue
        try:
            values.append([endpoint_uno_c(draw, r[rows], horizons) for r in risks])
        except ValueError:  # a draw without follow-up past tau cannot be scored
            continue
    return np.array(values)


def absolute_gates(bundle: ModelBundle, metrics: dict[str, float], held_out: pd.DataFrame,
                   target: EndpointTarget, seed: int) -> dict[str, Any]:
    """Gates at the main horizon on the main endpoint's held-out predictions."""
    h = bundle.main_horizon_months
    risk = _main_risk(bundle, held_out)
    draws = bootstrap_uno_c([risk], target, bundle.horizons_months,
                            bootstrap_indices(held_out, BOOTSTRAP_DRAWS, seed))
    curve = net_benefit(np.asarray(target.months, float), np.asarray(target.code), risk, h, DCA_THRESHOLDS,
                        target.event_of_interest)
    useful = curve[(curve.model > curve.treat_all) & (curve.model > curve.treat_none)]
    slope, oe = metrics.get(f"cal_slope_{h}m", np.nan), metrics.get(f"cal_oe_{h}m", np.nan)
    return {
        f"cal_slope_{h}m": slope, "cal_slope_ok": bool(SLOPE_BOUNDS[0] <= slope <= SLOPE_BOUNDS[1]),
        f"cal_oe_{h}m": oe, "cal_oe_ok": bool(OE_BOUNDS[0] <= oe <= OE_BOUNDS[1]),
        "uno_c_lower95": float(np.quantile(draws[:, 0], 0.025)) if len(draws) else np.nan,
        "uno_c_upper95": float(np.quantile(draws[:, 0], 0.975)) if len(draws) else np.nan,
        "uno_c_lower95_ok": bool(len(draws) and np.quantile(draws[:, 0], 0.025) > 0.5),
        "net_benefit_thresholds_useful": int(len(useful)),
        "net_benefit_ok": bool(len(useful) > 0),
    }


def compare_with_champion(new: ModelBundle, champion: ModelBundle, held_out: pd.DataFrame,
                          targets: dict[str, EndpointTarget], seed: int) -> dict[str, Any]:
    main = {new.main_endpoint: targets[new.main_endpoint]}
    risks = [_main_risk(b, held_out) for b in (new, champion)]
    draws = bootstrap_uno_c(risks, main[new.main_endpoint], new.horizons_months,
                            bootstrap_indices(held_out, BOOTSTRAP_DRAWS, seed + 1))
    delta = draws[:, 0] - draws[:, 1]
    new_eval = evaluate_bundle(new, held_out, main).metrics
    old_eval = evaluate_bundle(champion, held_out, main).metrics
    return {
        "champion_uno_c": old_eval["uno_c"], "delta_uno_c": new_eval["uno_c"] - old_eval["uno_c"],
        "delta_uno_c_lower95": float(np.quantile(delta, 0.025)),
        "champion_ibs": old_eval["ibs"], "delta_ibs": new_eval["ibs"] - old_eval["ibs"],
    }


def decide(gates: dict[str, Any], comparison: dict[str, Any] | None, champion_note: str) -> PromotionDecision:
    failed = [name[:-3] for name, ok in gates.items() if name.endswith("_ok") and not ok]
    if failed:
        return PromotionDecision(False, f"failed gate(s): {', '.join(failed)}; {champion_note}", gates)
    if comparison is None:
        return PromotionDecision(True, f"passed every gate; {champion_note}", gates)
    all_values = {**gates, **comparison}
    if comparison["delta_uno_c_lower95"] <= MIN_DELTA_C_LOWER:
        return PromotionDecision(False, "worse than the champion beyond noise "
                                        f"(delta-C lower bound {comparison['delta_uno_c_lower95']:.3f})", all_values)
    if comparison["delta_uno_c"] > 0 or comparison["delta_ibs"] < 0:
        return PromotionDecision(True, f"passed every gate and beats the champion (delta-C "
                                       f"{comparison['delta_uno_c']:+.4f}, delta-IBS {comparison['delta_ibs']:+.4f})",
                                 all_values)
    return PromotionDecision(False, "passed the gates but is not better than the champion on C or IBS",
                             all_values)


# --- models/ export ---------------------------------------------------------------------------------

def read_champion(models_dir: Path, task: str) -> dict[str, Any] | None:
    path = Path(models_dir) / task / CHAMPION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def export_champion(bundle_dir: Path, models_dir: Path, task: str, version: str, run_id: str,
                    data_digest: str) -> Path:
    """Copy the bundle to models/<task>/<version>/ and atomically point champion.json at it."""
    target = Path(models_dir) / task / str(version)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle_dir, target)
    pointer = {"task": task, "version": str(version), "path": str(version), "run_id": run_id,
               "data_digest": data_digest, "exported_at": datetime.now(UTC).isoformat(timespec="seconds")}
    temporary = target.parent / f".{CHAMPION_FILE}.tmp"
    temporary.write_text(json.dumps(pointer, indent=1))
    os.replace(temporary, target.parent / CHAMPION_FILE)
    return target
