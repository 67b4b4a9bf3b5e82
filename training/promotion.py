"""The promotion gate (clarifications §5), the export of a champion bundle to `models/`, and moving the alias
by hand (`make promote`, `make rollback`).

The gates live in one configuration, `training/promotion_gates.toml` (`load_gates`). They read evidence, not one
split's point estimate: at the main horizon of the main endpoint, the pooled cross-centre estimate of the
internal-external validation (random-effects over left-out centres; the fold mean over repeated cross-validation
without centres) with its 95 % confidence interval. A calibration gate (slope, O/E) fails only when the whole
interval lies outside its band; the discrimination gate (Uno's C) only when the whole interval lies below its
floor. Net benefit must beat treat-all and treat-none somewhere in the threshold range on the held-out patients.
The family is chosen on development data (training/selection.py); when it fails a gate the Cox baseline faces
the same gates before anything is registered as failed (`fall_back_to_baseline`). Against the champion: a paired
bootstrap of delta-C on held-out patients neither model trained on (`shared_held_out`); promote when its lower
bound is above the floor and the new version is better on C or IBS. A version that fails keeps only the alias
`challenger`; the champion, `models/<task>/champion.json` and therefore serving stay as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import EndpointTarget
from risk_model.bundle import BUNDLE_FILE, BUNDLE_FORMAT_VERSION, ModelBundle
from training.bootstrap import bootstrap_indices
from training.evaluate import concordance_with_se, evaluate_bundle, net_benefit, subset_target, uno_tau
from training.mlflow_store import relocate_store
from training.splits import HoldOutSplit, hold_out_centres

GATES_FILE = Path(__file__).with_name("promotion_gates.toml")
CHAMPION_FILE = "champion.json"
HISTORY_TAG = "champion_history"  # registered-model tag: versions in the order they became champion


@dataclass(frozen=True)
class PromotionGates:
    slope_bounds: tuple[float, float] = (0.8, 1.25)
    oe_bounds: tuple[float, float] = (0.8, 1.25)
    min_uno_c: float = 0.5
    net_benefit_range: tuple[float, float, float] = (0.05, 0.60, 0.01)  # first, last, step
    min_delta_uno_c_lower95: float = -0.01
    bootstrap_draws: int = 200
    bootstrap_min_centres: int = 5
    source: str = "defaults"

    @property
    def thresholds(self) -> np.ndarray:
        first, last, step = self.net_benefit_range
        return np.round(np.arange(first, last + step / 2, step), 4)

    def as_params(self) -> dict[str, Any]:
        """Every gate's value, for the run's parameters."""
        return {f"gate_config_{k}": str(list(v)) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def load_gates(path: str | Path | None = None) -> PromotionGates:
    """The gates from `training/promotion_gates.toml` (or another file of the same shape)."""
    path = Path(path) if path else GATES_FILE
    spec = tomllib.loads(path.read_text())
    absolute, champion, bootstrap = spec["absolute"], spec["champion"], spec["bootstrap"]
    return PromotionGates(
        slope_bounds=tuple(absolute["calibration_slope"]), oe_bounds=tuple(absolute["observed_expected"]),
        min_uno_c=float(absolute["min_uno_c"]),
        net_benefit_range=tuple(absolute["net_benefit_thresholds"]),
        min_delta_uno_c_lower95=float(champion["min_delta_uno_c_lower95"]),
        bootstrap_draws=int(bootstrap["draws"]), bootstrap_min_centres=int(bootstrap["min_centres"]),
        source=str(path),
    )


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    gates: dict[str, Any] = field(default_factory=dict)
    # One row per evidence gate: name, estimate, lower95, upper95, band, source, passed (model card, run note).
    table: list[dict[str, Any]] = field(default_factory=list)


def _main_risk(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    return bundle.event_probability(frame, np.array([bundle.main_horizon_months]))[:, 0]


def bootstrap_uno_c(risks: list[np.ndarray], target: EndpointTarget, horizons: list[int],
                    indices: list[np.ndarray]) -> np.ndarray:
    """Uno's C of each model's risk on each bootstrap draw (draws x models), held-out predictions, no refit."""
    values = []
    for rows in indices:
        draw = subset_target(target, rows)
        if not np.any(draw.code == draw.event_of_interest):
            continue
        tau = uno_tau(np.asarray(draw.months, float), horizons)
        scores = [concordance_with_se(draw, r[rows], tau)[0] for r in risks]
        if all(np.isfinite(scores)):
            values.append(scores)
    return np.array(values).reshape(-1, len(risks))


@dataclass(frozen=True)
class GateEstimate:
    """One evidence gate: an estimate with its 95 % confidence interval against a band.

    `kind` "calibration": fails only when the whole interval lies outside [low, high]; "discrimination": fails
    only when the whole interval lies below `low` (`high` is infinite). Without an interval the point decides; an
    estimate that could not be computed fails (nothing to show the gate is met)."""

    name: str
    kind: str
    estimate: float
    lower: float
    upper: float
    band: tuple[float, float]
    source: str

    @property
    def passed(self) -> bool:
        lower, upper = (self.lower, self.upper) if np.isfinite(self.lower) and np.isfinite(self.upper) \
            else (self.estimate, self.estimate)
        if not (np.isfinite(lower) and np.isfinite(upper)):
            return False
        low, high = self.band
        if self.kind == "discrimination":
            return bool(upper >= low)
        return bool(upper >= low and lower <= high)

    def values(self) -> dict[str, Any]:
        """Flat keys for the decision, MLflow (`gate_<key>`) and promotion.json."""
        return {self.name: self.estimate, f"{self.name}_lower95": self.lower, f"{self.name}_upper95": self.upper,
                f"{self.name}_band_low": self.band[0], f"{self.name}_band_high": self.band[1],
                f"{self.name.rsplit('_', 1)[0] if self.kind == 'calibration' else self.name}_ok": self.passed}

    def row(self) -> dict[str, Any]:
        return {"gate": self.name, "estimate": self.estimate, "lower95": self.lower, "upper95": self.upper,
                "band": self.band, "kind": self.kind, "source": self.source, "passed": self.passed}


def pooled_estimate(validation: Any, family: str, endpoint: str, metric: str, horizon: float | None
                    ) -> tuple[float, float, float]:
    """(estimate, lower95, upper95) of one pooled metric of the internal-external validation; NaN when absent."""
    pooled = validation.pooled
    rows = pooled[(pooled["family"] == family) & (pooled["endpoint"] == endpoint) & (pooled["metric"] == metric)]
    rows = rows[rows["horizon"].isna()] if horizon is None else rows[rows["horizon"] == horizon]
    if rows.empty:
        return np.nan, np.nan, np.nan
    row = rows.iloc[0]
    return float(row["estimate"]), float(row["lower"]), float(row["upper"])


def evidence_gates(validation: Any, family: str, endpoint: str, horizon: int, gates: PromotionGates
                   ) -> list[GateEstimate]:
    """Calibration slope, O/E and Uno's C of `family` from the pooled cross-centre (or repeated cross-validated)
    estimates and their 95 % confidence intervals."""
    source = f"pooled {validation.design.kind} estimate, 95 % confidence interval"
    specs = (("cal_slope", "calibration", float(horizon), gates.slope_bounds),
             ("cal_oe", "calibration", float(horizon), gates.oe_bounds),
             ("uno_c", "discrimination", None, (gates.min_uno_c, np.inf)))
    result = []
    for metric, kind, h, band in specs:
        estimate, lower, upper = pooled_estimate(validation, family, endpoint, metric, h)
        name = f"{metric}_{horizon}m" if h is not None else metric
        result.append(GateEstimate(name, kind, estimate, lower, upper, (float(band[0]), float(band[1])), source))
    return result


def net_benefit_gate(bundle: ModelBundle, held_out: pd.DataFrame, target: EndpointTarget, gates: PromotionGates
                     ) -> dict[str, Any]:
    """Net benefit above treat-all and treat-none at one threshold or more, on the held-out patients."""
    risk = _main_risk(bundle, held_out)
    curve = net_benefit(np.asarray(target.months, float), np.asarray(target.code), risk, bundle.main_horizon_months,
                        gates.thresholds, target.event_of_interest)
    useful = curve[(curve.model > curve.treat_all) & (curve.model > curve.treat_none)]
    return {
        "net_benefit_thresholds_useful": int(len(useful)),
        "net_benefit_useful_from": float(useful.threshold.min()) if len(useful) else np.nan,
        "net_benefit_useful_to": float(useful.threshold.max()) if len(useful) else np.nan,
        "net_benefit_ok": bool(len(useful) > 0),
    }


@dataclass
class GateResult:
    """Every gate of one family: flat values (the decision's `gates`) and the evidence table."""

    family: str
    values: dict[str, Any]
    table: list[dict[str, Any]]

    @property
    def failed(self) -> list[str]:
        return failed_gates(self.values)


def failed_gates(values: dict[str, Any]) -> list[str]:
    return [name[:-3] for name, ok in values.items() if name.endswith("_ok") and not ok]


def absolute_gates(bundle: ModelBundle, validation: Any, held_out: pd.DataFrame, target: EndpointTarget,
                   gates: PromotionGates | None = None) -> GateResult:
    """The gates of one fitted family: the evidence gates from the validation, net benefit on the held-out data."""
    gates = gates or load_gates()
    estimates = evidence_gates(validation, bundle.family, bundle.main_endpoint, bundle.main_horizon_months, gates)
    values: dict[str, Any] = {}
    for estimate in estimates:
        values.update(estimate.values())
    values.update(net_benefit_gate(bundle, held_out, target, gates))
    return GateResult(bundle.family, values, [e.row() for e in estimates])


def fall_back_to_baseline(chosen: str, gate_result: Callable[[str], GateResult], baseline: str = "cox_ph"
                          ) -> tuple[GateResult, str]:
    """The family to register and why: the chosen one when it passes (or is the baseline); when it fails, the
    Cox baseline faces the same gates and is registered instead if it passes; when both fail, the chosen one is
    registered as failed with both results in the note."""
    result = gate_result(chosen)
    if not result.failed or chosen == baseline:
        return result, ""
    fallback = gate_result(baseline)
    if not fallback.failed:
        return fallback, (f"{chosen} (chosen on development data) failed gate(s) {', '.join(result.failed)}; the "
                          f"{baseline} baseline passed the same gates and is registered instead")
    return result, (f"{chosen} failed gate(s) {', '.join(result.failed)}; the {baseline} baseline failed too "
                    f"({', '.join(fallback.failed)})")


# --- head to head with the champion, on patients neither trained on ---------------------------------------

MIN_SHARED_PATIENTS = 50
MIN_SHARED_EVENTS = 10


def split_lineage(frame: pd.DataFrame, split: HoldOutSplit, seed: int, fraction: float) -> dict[str, Any]:
    """What a later run needs to know which patients this model never trained on (no patient values): the split
    seed and fraction, and the held-out centres when whole centres were held out."""
    by_centre = split.design.startswith("held-out centres")
    centres = sorted(frame.iloc[split.held_out]["centre"].astype(str).unique()) if by_centre else None
    return {"split_seed": int(seed), "held_out_fraction": float(fraction), "held_out_centres": centres}


def shared_held_out(champion: dict[str, Any], digest: str, frame: pd.DataFrame, split: HoldOutSplit,
                    event_column: str) -> tuple[np.ndarray | None, str]:
    """Positions within the new held-out set of patients the champion never trained on either, and how they were
    found; None (and why) when that cannot be known.

    Whole centres held out by the champion: the new held-out patients of those centres (same or changed data).
    Otherwise the same data only: the champion's split is recomputed from its seed and fraction and the patients
    held out by both are kept. Changed data without centres: which patients the champion trained on is unknown."""
    held = frame.iloc[split.held_out]
    centres = champion.get("held_out_centres")
    if centres is not None and "centre" in held.columns and held["centre"].notna().all():
        keep = np.flatnonzero(held["centre"].astype(str).isin(centres).to_numpy())
        how = "new held-out patients of the centres the champion held out too"
    elif champion.get("data_digest") != digest:
        return None, ("the champion was trained on other data without a centre hold-out: which of the new held-out "
                      "patients it trained on is unknown")
    elif champion.get("split_seed") is None:
        return None, "the champion's bundle does not record its split"
    else:
        theirs = hold_out_centres(frame, event_column, champion["held_out_fraction"], int(champion["split_seed"]))
        keep = np.flatnonzero(np.isin(split.held_out, theirs.held_out))
        how = "same data: patients held out by both splits"
    if len(keep) == len(held):
        how += " (all of the new held-out patients)"
    return keep, how


def enough_shared(target: EndpointTarget, rows: np.ndarray) -> bool:
    code = np.asarray(target.code)[rows]
    return len(rows) >= MIN_SHARED_PATIENTS and int(np.sum(code == target.event_of_interest)) >= MIN_SHARED_EVENTS


def compare_with_champion(new: ModelBundle, champion: ModelBundle, held_out: pd.DataFrame,
                          targets: dict[str, EndpointTarget], seed: int, gates: PromotionGates | None = None
                          ) -> dict[str, Any]:
    gates = gates or load_gates()
    main = {new.main_endpoint: targets[new.main_endpoint]}
    risks = [_main_risk(b, held_out) for b in (new, champion)]
    indices, _ = bootstrap_indices(held_out, gates.bootstrap_draws, seed + 1, gates.bootstrap_min_centres)
    draws = bootstrap_uno_c(risks, main[new.main_endpoint], new.horizons_months, indices)
    delta = draws[:, 0] - draws[:, 1]
    new_eval = evaluate_bundle(new, held_out, main).metrics
    old_eval = evaluate_bundle(champion, held_out, main).metrics
    return {
        "champion_uno_c": old_eval["uno_c"], "delta_uno_c": new_eval["uno_c"] - old_eval["uno_c"],
        "delta_uno_c_lower95": float(np.quantile(delta, 0.025)) if len(delta) else np.nan,
        "champion_ibs": old_eval["ibs"], "delta_ibs": new_eval["ibs"] - old_eval["ibs"],
    }


def decide(gate_values: dict[str, Any], comparison: dict[str, Any] | None, champion_note: str,
           gates: PromotionGates | None = None) -> PromotionDecision:
    gates = gates or load_gates()
    failed = failed_gates(gate_values)
    if failed:
        return PromotionDecision(False, f"failed gate(s): {', '.join(failed)}; {champion_note}", gate_values)
    if comparison is None:
        return PromotionDecision(True, f"passed every gate; {champion_note}", gate_values)
    all_values = {**gate_values, **comparison}
    if not comparison["delta_uno_c_lower95"] > gates.min_delta_uno_c_lower95:
        return PromotionDecision(False, "worse than the champion beyond noise "
                                        f"(delta-C lower bound {comparison['delta_uno_c_lower95']:.3f} <= "
                                        f"{gates.min_delta_uno_c_lower95}); {champion_note}", all_values)
    if comparison["delta_uno_c"] > 0 or comparison["delta_ibs"] < 0:
        return PromotionDecision(True, f"passed every gate and beats the champion (delta-C "
                                       f"{comparison['delta_uno_c']:+.4f}, delta-IBS {comparison['delta_ibs']:+.4f}); "
                                       f"{champion_note}", all_values)
    return PromotionDecision(False, f"passed the gates but is not better than the champion on C or IBS; "
                                    f"{champion_note}", all_values)


# --- models/ export ---------------------------------------------------------------------------------

def read_champion(models_dir: Path, task: str) -> dict[str, Any] | None:
    path = Path(models_dir) / task / CHAMPION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def export_champion(bundle_dir: Path, models_dir: Path, task: str, version: str, run_id: str,
                    data_digest: str, note: str = "") -> Path:
    """Copy the bundle to models/<task>/<version>/ and atomically point champion.json at it."""
    target = Path(models_dir) / task / str(version)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle_dir, target)
    pointer = {"task": task, "version": str(version), "path": str(version), "run_id": run_id,
               "data_digest": data_digest, "exported_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if note:
        pointer["note"] = note
    temporary = target.parent / f".{CHAMPION_FILE}.tmp"
    temporary.write_text(json.dumps(pointer, indent=1))
    os.replace(temporary, target.parent / CHAMPION_FILE)
    return target


# --- the registry: aliases, tags and the champion history ------------------------------------------------

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def champion_history(client: Any, task: str) -> list[str]:
    tags = client.get_registered_model(task).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def current_champion(client: Any, task: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(task, "champion").version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic exception when the alias is not set
        return None


def _tag_version_and_run(client: Any, task: str, version: str, tags: dict[str, str]) -> None:
    run_id = client.get_model_version(task, version).run_id
    for key, value in tags.items():
        client.set_model_version_tag(task, version, key, value)
        if run_id:
            client.set_tag(run_id, key, value)


def mark_challenger(client: Any, task: str, version: str) -> None:
    """Alias `challenger` on the new version; the one it replaces (unless champion) becomes a former challenger."""
    try:
        previous = str(client.get_model_version_by_alias(task, "challenger").version)
    except Exception:  # noqa: BLE001
        previous = None
    client.set_registered_model_alias(task, "challenger", version)
    champion = current_champion(client, task)
    if previous and previous != version and previous != champion:
        _tag_version_and_run(client, task, previous, {"registry_alias": "former_challenger"})
    _tag_version_and_run(client, task, version, {"registry_alias": "challenger"})


def mark_champion(client: Any, task: str, version: str, how: str, history: list[str] | None = None) -> None:
    """Alias `champion` on `version`, tags on it and on the one it replaces, and the champion history."""
    previous = current_champion(client, task)
    client.set_registered_model_alias(task, "champion", version)
    if previous and previous != version:
        _tag_version_and_run(client, task, previous, {"registry_alias": "former_champion"})
    _tag_version_and_run(client, task, version, {"registry_alias": "champion", "champion_since": _now(),
                                                 "champion_by": how})
    if history is None:
        history = champion_history(client, task) + [version]
    client.set_registered_model_tag(task, HISTORY_TAG, ",".join(history))


def _download_bundle(task: str, version: str, folder: Path) -> Path:
    """The bundle the registered pyfunc carries (its `bundle` artifact)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{task}/{version}", dst_path=str(folder)))
    found = [p.parent for p in local.rglob("bundle.json")]
    if not found:
        raise FileNotFoundError(f"{task} version {version} carries no bundle")
    return found[0]


def _export_version(client: Any, task: str, version: str, models_dir: Path, note: str) -> Path:
    with tempfile.TemporaryDirectory() as scratch:
        bundle_dir = _download_bundle(task, version, Path(scratch))
        stored_format = json.loads((bundle_dir / BUNDLE_FILE).read_text()).get("format_version")
        bundle = ModelBundle.load(bundle_dir, upgrade=True)  # `make promote` re-exports an older format as this one
        if bundle.lineage.get("version") != version or stored_format != BUNDLE_FORMAT_VERSION:
            bundle.lineage["version"] = version  # a bundle registered before its number was known
            bundle.save(bundle_dir)
        run_id = client.get_model_version(task, version).run_id
        return export_champion(bundle_dir, models_dir, task, version, run_id,
                               bundle.lineage.get("data_digest", "unknown"), note)


def promote_version(task: str, version: str, models_dir: str | Path = "models",
                    tracking_uri: str | None = None) -> dict[str, Any]:
    """`make promote TASK=... VERSION=...`: make a registered version the champion by hand, with the same
    export as an automatic promotion (models/<task>/<version>/ and an atomic champion.json)."""
    from mlflow import MlflowClient

    relocate_store(tracking_uri)  # a copied or moved folder reads its own artifacts
    client = MlflowClient(tracking_uri)
    version = str(version)
    details = client.get_model_version(task, version)  # raises when the version does not exist
    decision = details.tags.get("promotion_decision", "unknown")
    _export_version(client, task, version, Path(models_dir), f"promoted by hand (gate decision: {decision})")
    mark_champion(client, task, version, "make promote (by hand)")
    return {"task": task, "champion": version, "gate_decision": decision,
            "history": champion_history(client, task)}


def rollback(task: str, models_dir: str | Path = "models", tracking_uri: str | None = None) -> dict[str, Any]:
    """`make rollback TASK=...`: give the champion alias back to the version that held it before the current one
    (the registered model's champion history), with the same export."""
    from mlflow import MlflowClient

    relocate_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    current = current_champion(client, task)
    history = champion_history(client, task)
    if current and history and history[-1] == current:
        history = history[:-1]
    earlier = [v for v in history if v != current]
    if not earlier:
        raise LookupError(f"{task}: no earlier champion to roll back to (champion history: "
                          f"{','.join(champion_history(client, task)) or 'empty'})")
    target = earlier[-1]
    history = history[: len(history) - history[::-1].index(target)]
    _export_version(client, task, target, Path(models_dir), f"rolled back from version {current}")
    mark_champion(client, task, target, f"make rollback (from version {current})", history=history)
    return {"task": task, "champion": target, "rolled_back_from": current, "history": history}
