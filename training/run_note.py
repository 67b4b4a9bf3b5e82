"""What the MLflow UI shows of a `make train` run: the experiment opens as a model-training experiment (not the
GenAI view with its traces), and the parent run's description holds the closing summary of the run.

MLflow's UI reads the experiment tag `mlflow.experimentKind` (`custom_model_development`: the runs table) and a
run's description from the tag `mlflow.note.content` (markdown). Only aggregates go there: metrics, gate values,
version, predictor names; never a patient value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training.config import TrainSettings

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"
# MLflow refuses tag values longer than this (8000 characters in MLflow 3).
MAX_NOTE_CHARS = 8000
HEADLINE = ("uno_c", "harrell_c", "ibs", "auc_{h}m", "brier_{h}m", "cal_slope_{h}m", "cal_oe_{h}m")


def mark_model_training(client: Any, experiment_id: str) -> None:
    """Open the experiment on its runs table in the MLflow UI (also repairs experiments created before)."""
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)


def task_experiment(mlflow: Any, settings: TrainSettings) -> str:
    """The task's experiment, marked as model training so that the MLflow UI opens its runs table. Here, not in
    training/pipeline.py, so that a client that only logs into the trainer's experiment need not import the
    training stack."""
    existing = mlflow.get_experiment_by_name(settings.task)
    if existing:
        mark_model_training(mlflow.MlflowClient(), existing.experiment_id)
        return existing.experiment_id
    # A tracking server chooses the location itself (proxied to its --artifacts-destination, which every host
    # reaches through the server); a path here would exist on this host only.
    served = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if served else (settings.artifact_root / settings.task).as_uri()
    try:
        return mlflow.create_experiment(settings.task, artifact_location=location,
                                        tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
    except mlflow.exceptions.MlflowException:
        existing = mlflow.get_experiment_by_name(settings.task)  # another host's trainer created it just now
        if existing is None:
            raise
        return existing.experiment_id


def _number(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "pass" if value else "FAIL"
    if isinstance(value, int | np.integer):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.3f}" if np.isfinite(number) else "-"


def run_note(*, task: str, endpoint: str, horizon: int, data: str, split: str, metrics: dict[str, dict[str, float]],
             family: str, version: str, promoted: bool, reason: str, gates: dict[str, Any],
             interval: tuple[float, float] | None = None, not_learned: list[dict[str, str]] | None = None,
             gate_table: list[dict[str, Any]] | None = None) -> str:
    """The closing summary of a training run as markdown: held-out metrics of both families, the registered
    version, the gate values and the decision."""
    families = list(metrics)
    lines = [f"**{task}**: registered version **{version}** ({family}), "
             f"**{'promoted to champion' if promoted else 'not promoted (challenger)'}**: {reason}.", "",
             f"Data: {data}. Split: {split}.", "",
             f"Held-out metrics of the `{endpoint}` endpoint (patients never seen in tuning or fitting), main horizon "
             f"{horizon} months:", "",
             "| metric | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)]
    for template in HEADLINE:
        name = template.format(h=horizon)
        lines.append(f"| {name} | " + " | ".join(_number(metrics[f].get(name, np.nan)) for f in families) + " |")
    if interval is not None:
        lines += ["", f"Uno's C of the registered family: {_number(metrics[family].get('uno_c'))} held out; the gate's "
                      f"cross-validated 95 % interval {_number(interval[0])} to {_number(interval[1])}."]
    if gate_table:
        lines += ["", "Evidence gates (fail only when the whole interval lies outside the band, or below the floor):",
                  "", *gate_table_lines(gate_table)]
    lines += ["", "Promotion gate:", "", "| gate | value |", "|---|---|"]
    lines += [f"| {name} | {_number(value)} |" for name, value in gates.items()]
    if not_learned:
        lines += ["", "Predictors the model could not learn from: "
                  + "; ".join(f"`{item['name']}` ({item['reason']})" for item in not_learned) + "."]
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_NOTE_CHARS:
        text = text[: MAX_NOTE_CHARS - 40].rsplit("\n", 1)[0] + "\n\n(cut: see promotion.json)\n"
    return text


def gate_table_lines(table: list[dict[str, Any]]) -> list[str]:
    """The evidence gates as a markdown table: estimate, 95 % interval, band, result and where it comes from."""
    lines = ["| gate | estimate | 95 % interval | band | result | evidence |", "|---|---:|---|---|---|---|"]
    for row in table:
        low, high = row["band"]
        band = f"above {_number(low)}" if not np.isfinite(high) else f"{_number(low)} to {_number(high)}"
        lines.append(f"| {row['gate']} | {_number(row['estimate'])} | {_number(row['lower95'])} to "
                     f"{_number(row['upper95'])} | {band} | {_number(bool(row['passed']))} | {row['source']} |")
    return lines
