"""A one-patient request is prepared without pandas when its task registers one-record rules and derived
predictors: the prepared row and the broken rules must be those of the DataFrame path that files take."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from features.task_schema import TaskSchema
from features.tasks import TASKS
from serving.api import _prepare_frame, prepare_patients

RECORD_TASKS = sorted(
    name
    for name, task in TASKS.items()
    if task.schema.prepares_records and (task.schema.cross_field_rules or task.schema.derived_predictors)
)


def _requests(schema: TaskSchema, cohort: Any, rng: random.Random) -> list[dict[str, Any]]:
    """Requests as the request model dumps them (derived predictors left out), then variants that break rules:
    each of a rule's columns from another patient, its last one missing, its numbers at the extremes, and derived
    predictors sent with the right or a wrong value."""
    derived = {name for name, _ in schema.derived_predictors}
    fields = [p for p in (*schema.predictors, *schema.grouping) if p.name not in derived]
    rows = cohort.astype(object).where(cohort.notna(), None).to_dict("records")
    base = [{p.name: row.get(p.name) for p in fields} for row in rows]
    requests = list(base)
    by_name = {p.name: p for p in schema.predictors}
    for request in base[:30]:
        for rule in schema.cross_field_rules:
            requests.append({**request, **{c: rng.choice(base).get(c) for c in rule.columns if c not in derived}})
            requests.append({**request, rule.columns[-1]: None} if rule.columns[-1] not in derived else request)
            first, last = by_name.get(rule.columns[0]), by_name.get(rule.columns[-1])
            if first and last and first.kind == last.kind == "number" and not derived & {first.name, last.name}:
                requests.append({**request, first.name: first.maximum, last.name: last.minimum})
    first = _prepare_frame(schema, base[:20])  # one frame: each row prepared as a one-row frame prepares it
    for request, (prepared, _) in zip(base[:20], first, strict=True):
        for name in derived:
            right = prepared[name] if prepared else None
            requests.append({**request, name: right})
            wrong = right + 0.5 if isinstance(right, float) else ("high" if right != "high" else "standard")
            requests.append({**request, name: wrong})
    return requests


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("task_name", RECORD_TASKS)
def test_one_record_is_prepared_as_the_file_path_prepares_it(task_name):
    schema = TASKS[task_name].schema
    requests = _requests(schema, TASKS[task_name].generate_cohort(60, 7), random.Random(3))
    derived = {name for name, _ in schema.derived_predictors}
    plain = [request for request in requests if not derived & request.keys()]  # as the request model sends them
    batch = dict(zip(map(id, plain), _prepare_frame(schema, plain), strict=True))  # one frame, as a batch goes
    by_keys: dict[frozenset[str], list[dict[str, Any]]] = {}
    for request in requests:  # requests that send a derived predictor: one frame per set of fields sent
        if derived & request.keys():
            by_keys.setdefault(frozenset(request), []).append(request)
    for same_fields in by_keys.values():
        batch.update(zip(map(id, same_fields), _prepare_frame(schema, same_fields), strict=True))
    broken: set[str] = set()
    for i, request in enumerate(requests):
        [fast] = prepare_patients(schema, [request])
        # Each request against its batch, and every fourth one also against a one-row frame (40 ms each): the
        # kinds of variant all meet both, and a one-row frame prepares as a row of a batch.
        slows = [batch[id(request)]]
        if i % 4 == 0:
            slows += _prepare_frame(schema, [request])
        for slow in slows:
            assert fast[1] == slow[1]
            assert (fast[0] is None) == (slow[0] is None)
            if fast[0] is not None:
                assert fast[0].keys() == slow[0].keys()
                assert all(_same(fast[0][k], slow[0][k]) for k in fast[0]), (fast[0], slow[0])
        broken |= {problem["reason"] for problem in fast[1]}
    assert sum(problems == [] for _, problems in batch.values()) > 30  # valid requests were compared too
    assert broken == {rule.name for rule in schema.cross_field_rules}  # and every rule was broken at least once
