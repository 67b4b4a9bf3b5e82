"""`make task`: a spec drafted from a registry file loads as written, keeps identifiers and the future out, and
validates the file it was drafted from."""

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.registry_file import load_registry_file
from features.task_draft import DraftError, draft_task, leak_reason
from features.task_schema import SchemaValidationError
from features.task_spec import load_spec
from features.tasks import load_task
from training.cli import main

N = 80


def registry(n: int = N, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.uniform(1.5, 9.4, n).round(1)
    score[:5] = np.nan  # an optional predictor
    return pd.DataFrame({
        "score": score,
        "risk_group": rng.choice(["low", "intermediate", "high"], n),
        "smoker": rng.choice(["yes", "no"], n),
        "disease_months": rng.integers(2, 40, n),
        "months_to_remission": rng.uniform(0, 30, n).round(1),  # known only after time zero
        "followup_days": rng.uniform(10, 1500, n).round(0),
        "event_code": np.resize([0, 1, 2], n),  # 0 censored, 1 and 2 competing causes
    })


def _csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "registry.csv"
    frame.to_csv(path, index=False)
    return path


def _draft(tmp_path: Path, frame: pd.DataFrame, name: str = "drafted"):
    return draft_task(_csv(tmp_path, frame), name, "followup_days", "event_code", tmp_path / "tasks")


def test_the_draft_infers_types_ranges_missingness_units_and_causes(tmp_path):
    draft, path = _draft(tmp_path, registry())
    assert path == tmp_path / "tasks" / "drafted" / "task.toml"
    spec = load_spec(path.parent)  # loads as written, no edit
    predictors = {p.name: p for p in spec.predictors}
    assert list(predictors) == ["score", "risk_group", "smoker", "disease_months"]
    assert predictors["score"].kind == "number" and not predictors["score"].required
    assert (predictors["score"].minimum, predictors["score"].maximum) == (1, 10)  # 1.5..9.4 rounded outward
    assert predictors["risk_group"].categories == ["high", "intermediate", "low"]
    assert predictors["smoker"].kind == "boolean" and predictors["smoker"].required
    assert predictors["disease_months"].unit == "months"
    assert predictors["disease_months"].unit_suffixes == ["months", "days", "years"]
    assert spec.outcome.kind == "competing_risks" and [c.code for c in spec.causes] == [1, 2]
    # The time column is read in months, the file's days converted on loading.
    assert (spec.outcome.time_column, spec.outcome.time_unit_suffixes) == ("followup_months", ["days"])
    assert "# CONFIRM: score: optional (5 of 80 missing)" in draft.text


def test_a_post_time_zero_column_is_flagged_and_left_out_of_the_predictors(tmp_path):
    draft, path = _draft(tmp_path, registry())
    assert [line.split(":")[0] for line in draft.leaking] == ["months_to_remission"]
    spec = tomllib.loads(path.read_text())
    assert [c["name"] for c in spec["outcome"]["columns"]] == ["months_to_remission"]
    assert "# LEAKING THE FUTURE: months_to_remission" in draft.text
    assert "# CONFIRM: LEAKING THE FUTURE? months_to_remission" in draft.text
    assert '# name = "months_to_remission"' in draft.text  # offered to a human, commented out


def test_the_drafted_task_validates_the_file_it_was_drafted_from(tmp_path):
    frame = registry()
    _, path = _draft(tmp_path, frame)
    loaded = load_registry_file(tmp_path / "registry.csv", load_task(path.parent).schema)
    assert len(loaded.frame) == N
    assert loaded.unit_conversions == ["followup_days -> followup_months (x 0.0328542)"]
    assert loaded.frame["followup_months"].max() == pytest.approx(frame["followup_days"].max() / 30.4375, rel=1e-4)


def test_identifier_like_and_date_columns_are_refused_by_name_and_nothing_is_written(tmp_path):
    frame = registry().assign(patient_name="x", visit=["2021-03-04"] * N, id=range(N))
    with pytest.raises(DraftError) as caught:
        _draft(tmp_path, frame)
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("column 'patient_name': direct identifier")
    assert problems[1].startswith("column 'visit': its values are exact dates (80 value(s), first in row 1)")
    assert problems[2].startswith("column 'id': a record or row key")
    assert "2021-03-04" not in str(caught.value)
    assert not (tmp_path / "tasks").exists()


def test_an_existing_task_folder_is_never_overwritten(tmp_path):
    _, path = _draft(tmp_path, registry())
    before = path.read_text()
    with pytest.raises(DraftError, match="already exists"):
        _draft(tmp_path, registry(seed=9))
    assert path.read_text() == before


def test_a_single_event_gets_an_incidence_and_its_complement(tmp_path):
    frame = registry().assign(event_code=np.resize([0, 1], N))
    _, path = _draft(tmp_path, frame)
    spec = load_spec(path.parent)
    assert spec.outcome.kind == "single_event"
    assert [(e.kind, e.complement_of) for e in spec.endpoints] == [("incidence", None), ("survival", "event")]


@pytest.mark.parametrize(("name", "leaks"), [
    ("rel", True), ("ae", True), ("ae_s", True), ("time_to_transplant", True), ("second_status", True),
    ("relapse_time", True), ("agecl", False), ("year", False), ("match", False), ("proph", False),
])
def test_leak_reasons(name, leaks):
    columns = ["rel", "rel_s", "ae", "ae_s", "agecl", "year", "match", "proph"]
    assert (leak_reason(name, columns) is not None) == leaks


def test_the_cli_prints_the_draft_or_every_problem(tmp_path, capsys):
    data = _csv(tmp_path, registry())
    common = ["task", "--data", str(data), "--time", "followup_days", "--tasks-dir", str(tmp_path / "tasks")]
    assert main([*common, "--name", "bad", "--event", "nowhere"]) == 1
    assert "EVENT column 'nowhere' is not in the file" in capsys.readouterr().err
    assert main([*common, "--name", "good", "--event", "event_code"]) == 0
    out = capsys.readouterr().out
    assert '[[predictors]]\nname = "score"' in out
    assert "months_to_remission: a time to an event (after time zero)" in out
    assert (tmp_path / "tasks" / "good" / "task.toml").exists()


def test_a_draft_that_would_not_load_is_not_written(tmp_path):
    # followup_days is read as followup_months: a file column of that name would make two columns of one name.
    frame = registry().assign(followup_months=np.resize([1.0, 2.0], N))
    with pytest.raises(DraftError, match="name 'followup_months' is used more than once"):
        _draft(tmp_path, frame)
    assert not (tmp_path / "tasks").exists()


# --- CAUSES=: a 0/1 event column and a separate column naming the cause ----------------------------------------

def cause_registry(n: int = N) -> pd.DataFrame:
    frame = registry(n).drop(columns=["event_code", "months_to_remission"])
    status = np.resize([0, 1, 1, 1], n)
    cause = np.resize(["Relapse", "Death (other)", "relapse"], n)  # labels in the registry's own spelling
    return frame.assign(status=status, first_event=np.where(status == 1, cause, None))


def _draft_causes(tmp_path: Path, frame: pd.DataFrame):
    return draft_task(_csv(tmp_path, frame), "by_cause", "followup_days", "status", tmp_path / "tasks",
                      "first_event")


def test_a_text_cause_column_names_the_causes_and_the_draft_validates_the_file(tmp_path):
    frame = cause_registry()
    draft, path = _draft_causes(tmp_path, frame)
    spec = load_spec(path.parent)
    assert (spec.outcome.kind, spec.outcome.event_coding) == ("competing_risks", "binary")
    assert spec.outcome.cause_column == "first_event"
    assert [(c.code, c.name, c.labels) for c in spec.causes] == [(1, "death_other", ["death (other)"]),
                                                                 (2, "relapse", ["relapse"])]
    assert "first_event" not in draft.predictors  # an outcome column, never a predictor
    task = load_task(path.parent)
    loaded = load_registry_file(tmp_path / "registry.csv", task.schema)
    targets = task.cause_targets(loaded.frame)
    causes = np.asarray(frame["first_event"].str.lower().fillna(""))
    assert targets["relapse"][1].tolist() == (causes == "relapse").astype(int).tolist()
    assert targets["death_other"][1].sum() == (causes == "death (other)").sum()


def test_numeric_cause_codes_stay_cause_k_for_a_human_to_name(tmp_path):
    frame = cause_registry().assign(first_event=lambda f: np.where(f["status"] == 1, np.resize([2, 5], N), np.nan))
    draft, path = _draft_causes(tmp_path, frame)  # the gaps make the codes 2.0, 5.0 in the CSV
    assert [(c.name, c.labels) for c in load_spec(path.parent).causes] == [("cause_2", ["2"]), ("cause_5", ["5"])]
    assert "# CONFIRM: first_event code 5: name this cause" in draft.text
    assert len(load_registry_file(tmp_path / "registry.csv", load_task(path.parent).schema).frame) == N


def test_an_event_without_a_cause_and_a_censored_row_with_one_are_reported_by_row_without_values(tmp_path):
    _, path = _draft_causes(tmp_path, cause_registry())
    bad = cause_registry()
    bad.loc[1, "first_event"] = None  # status 1: an event without its cause
    bad.loc[4, "first_event"] = "Relapse"  # status 0: censored, yet a cause
    bad.loc[5, "first_event"] = "graft failure"  # not a label of the task
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SchemaValidationError) as caught:
        load_registry_file(tmp_path / "bad.csv", load_task(path.parent).schema)
    found = [(p.row, p.column, p.value, p.rule) for p in caught.value.problems]
    assert found == [
        (2, "first_event", None, "an event (status = 1) needs its cause"),
        (5, "first_event", None, "a censored row (status = 0) has no cause: leave it empty"),
        (6, "first_event", None, "not a cause label of the task; allowed: death (other), relapse"),
    ]


def test_with_causes_the_event_column_must_be_0_or_1(tmp_path):
    frame = cause_registry().assign(status=np.resize([0, 1, 2], N))
    with pytest.raises(DraftError, match="with CAUSES= every row needs 0 .censored. or 1"):
        _draft_causes(tmp_path, frame)


# --- a date later than the others ------------------------------------------------------------------------------

def test_an_exact_date_later_than_the_others_is_refused_for_both_reasons(tmp_path):
    start = pd.Timestamp("2015-01-01") + pd.to_timedelta(np.arange(N) * 9, unit="D")
    frame = registry().assign(treated_on=start.strftime("%Y-%m-%d"),
                              relapsed_on=(start + pd.to_timedelta(np.resize([30, 200, 400], N), unit="D"))
                              .strftime("%d.%m.%Y"))
    with pytest.raises(DraftError) as caught:
        _draft(tmp_path, frame)
    treated, relapsed = caught.value.problems
    assert treated.startswith("column 'treated_on': its values are exact dates") and "after time zero" not in treated
    assert relapsed.startswith("column 'relapsed_on': its values are exact dates")
    assert relapsed.endswith("it also looks like what happens after time zero: its dates mostly fall after those "
                             "of 'treated_on' (a date later than the others: after time zero)")
    assert "2015" not in str(caught.value)


@pytest.mark.parametrize("later", ["year_of_relapse", "year_of_review"])
def test_a_year_later_than_the_other_dates_is_kept_out_of_the_predictors(tmp_path, later):
    rng = np.random.default_rng(4)
    diagnosed = rng.integers(2005, 2016, N)
    frame = registry().drop(columns="months_to_remission").assign(
        diagnosis_month=[f"{m:02d}/{y}" for m, y in zip(rng.integers(1, 13, N), diagnosed, strict=True)],
        year_of_diagnosis=diagnosed, **{later: diagnosed + rng.integers(1, 4, N)})
    draft, _ = _draft(tmp_path, frame)
    assert "year_of_diagnosis" in draft.predictors and "diagnosis_month" in draft.predictors  # the same year
    reasons = dict(line.split(": ", 1) for line in draft.leaking)
    assert list(reasons) == [later]
    by_date = "its dates mostly fall after those of 'diagnosis_month', 'year_of_diagnosis' (a date later than"
    if later == "year_of_relapse":  # both reasons, so the human learns each
        assert reasons[later].startswith("its name says 'relapse'") and f"; and {by_date}" in reasons[later]
    else:
        assert reasons[later].startswith(by_date)


def test_centre_and_country_are_grouping_columns_never_predictors(tmp_path):
    frame = registry().assign(centre=np.resize(["C01", "C02", "C03"], N), country=np.resize(["FR", "DE"], N))
    draft, path = _draft(tmp_path, frame)
    assert not {"centre", "country"} & set(draft.predictors)
    assert [g.name for g in load_spec(path.parent).grouping] == ["centre", "country"]
    loaded = load_registry_file(tmp_path / "registry.csv", load_task(path.parent).schema)
    assert loaded.frame["centre"].nunique() == 3
    with pytest.raises(DraftError, match="column 'center': a centre code is a grouping column"):
        _draft(tmp_path, frame.rename(columns={"centre": "center"}), "spelt")
