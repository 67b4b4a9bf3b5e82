"""Predictors a model cannot learn from: one value (or one category, or an empty cell) for 99 % or more of the
patients of a training file.

A registry without a column sometimes fills it with one made-up value to fit the schema (`disease_subclass = AML`
for everyone). The model then learns nothing from it, yet answers as if it had: AML and CML patients get the same
risk. So validation reports such a predictor, training refuses the file until the user drops it
(`--drop-predictor NAME`, `make train ... DROP=a,b`), and a model trained without it says so in its card and in
every answer. A dropped predictor may be absent from the file, even when the schema requires it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import pandas as pd

from features.task_schema import Problem, TaskSchema, _as_boolean

NEAR_CONSTANT_SHARE = 0.99
EMPTY = "<empty>"


@dataclass(frozen=True)
class Variation:
    """The most common state of a predictor in a file: a value, or empty (`value` None), and its share."""

    predictor: str
    value: object | None
    count: int
    rows: int

    @property
    def share(self) -> float:
        return self.count / self.rows if self.rows else 1.0

    def describe(self) -> str:
        """e.g. "the same value (AML) for all 2204 patients", "empty for 99.6 % of the 500 patients"."""
        # Never round a near-constant share up to 100 %: "all" only when it is all.
        amount = (f"all {self.rows}" if self.count == self.rows
                  else f"{min(100 * self.share, 99.9):.1f} % of the {self.rows}")
        if self.value is None:
            return f"empty for {amount} patients"
        return f"the same value ({_shown(self.value)}) for {amount} patients"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _states(values: pd.Series, kind: str) -> pd.Series:
    """Each patient's value as a comparable state (numbers parsed, flags as booleans, text stripped), EMPTY when
    missing; a value that does not parse keeps its text (validation reports it)."""
    text = values.astype("string").str.strip()
    empty = (values.isna() | text.eq("")).fillna(True).to_numpy(bool)
    if kind == "number":
        numbers = pd.to_numeric(text, errors="coerce")
        states = numbers.astype(object).where(numbers.notna(), text.astype(object))
    elif kind == "boolean":
        parsed, bad = _as_boolean(values.where(~empty))
        states = parsed.map({1.0: True, 0.0: False}).astype(object).where(~bad, text.astype(object))
    else:
        states = text.astype(object)
    return states.where(~empty, EMPTY)


def dominant_state(values: pd.Series, kind: str, name: str) -> Variation:
    counts = _states(values, kind).value_counts(dropna=False)
    if counts.empty:
        return Variation(name, None, 0, 0)
    top = counts.index[0]
    return Variation(name, None if top == EMPTY else top, int(counts.iloc[0]), int(len(values)))


def near_constant_predictors(frame: pd.DataFrame, schema: TaskSchema, skip: Collection[str] = ()
                             ) -> list[Variation]:
    """Predictors whose most common state covers >= 99 % of the rows. An absent optional column counts as empty
    for everyone; an absent required or derived one is left to the schema's own checks."""
    derived = {name for name, _ in schema.derived_predictors}
    found = []
    for p in schema.predictors:
        if p.name in skip:
            continue
        if p.name not in frame.columns:
            if p.required or p.name in derived:
                continue
            found.append(Variation(p.name, None, len(frame), len(frame)))
            continue
        variation = dominant_state(frame[p.name], p.kind, p.name)
        if variation.rows and variation.share >= NEAR_CONSTANT_SHARE:
            found.append(variation)
    return found


def drop_rule(name: str) -> str:
    return (f"drop it from the model with --drop-predictor {name} (make train/validate TASK=... DATA=... "
            f"DROP={name}), or send a file in which it varies")


def constant_predictor_problems(frame: pd.DataFrame, schema: TaskSchema, drop: Collection[str] = ()
                                ) -> list[Problem]:
    """One problem per near-constant predictor not dropped, and per dropped name the schema does not know."""
    problems = [Problem(None, name, None, f"--drop-predictor names no predictor of {schema.task}; predictors: "
                                          f"{', '.join(schema.predictor_names)}")
                for name in drop if name not in schema.predictor_names]
    if set(schema.predictor_names) <= set(drop):
        problems.append(Problem(None, ",".join(drop), None, "every predictor is dropped: nothing would be learned"))
    for v in near_constant_predictors(frame, schema, skip=drop):
        problems.append(Problem(None, v.predictor, None,
                                f"{v.describe()} (threshold {100 * NEAR_CONSTANT_SHARE:.0f} %): no model can learn "
                                "from a predictor that does not vary, and it would answer as if it had; "
                                + drop_rule(v.predictor)))
    return problems


def with_optional(schema: TaskSchema, names: Collection[str]) -> TaskSchema:
    """The schema with the named predictors optional: a file (or request) may leave a dropped predictor out."""
    if not names:
        return schema
    return replace(schema, predictors=tuple(replace(p, required=False) if p.name in names else p
                                            for p in schema.predictors))


def without_predictors(schema: TaskSchema, names: Collection[str]) -> TaskSchema:
    """The schema a model is fitted with when predictors are dropped: they are not in its encoding."""
    if not names:
        return schema
    # A dropped stratum column stratifies nothing (it is constant, or not recorded).
    return replace(schema, predictors=tuple(p for p in schema.predictors if p.name not in names),
                   strata=tuple(s for s in schema.strata if s not in names))


def not_learned_reasons(frame: pd.DataFrame, schema: TaskSchema, names: Collection[str]) -> list[dict[str, str]]:
    """For the model card, the bundle and every answer: each dropped predictor and why it was not learned."""
    reasons = []
    for p in schema.predictors:
        if p.name not in names:
            continue
        if p.name not in frame.columns or frame[p.name].isna().all():
            reason = "it is not recorded in the training data"
        else:
            variation = dominant_state(frame[p.name], p.kind, p.name)
            reason = (f"{variation.describe()} in the training data" if variation.share >= NEAR_CONSTANT_SHARE
                      else "dropped on request, although it varies in the training data")
        reasons.append({"name": p.name, "reason": reason})
    return reasons
