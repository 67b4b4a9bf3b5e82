"""Draft a task's `task.toml` from a registry file (`make task NAME= DATA= TIME= EVENT=`).

The draft infers each column's type, range, categories and missingness, refuses identifier-like columns by name
(the loader's own rules), reads durations by their unit suffix, and keeps columns that look like what happens
after time zero (by name, or a date or year mostly later than the file's other dates) out of the predictors:
they are listed as outcome columns (so the same file still validates) and offered as commented-out predictors
that a human must confirm. Every guess a human must check says `# CONFIRM`.

Competing risks: the EVENT column holds 0 (censored) or the cause code 1..K of the first event; K > 1 makes a
competing-risks task with causes `cause_1` .. `cause_K` (to be renamed by a human). Or (CAUSES=<column>) the
EVENT column holds 0/1 and a cause column says which cause an event was: its text labels become the cause names
(lower-case, `_` for anything else), numeric codes stay `cause_<code>` for a human to name.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from features.registry_file import IDENTIFIER_RULE, date_valued_rows, is_identifier_like, read_table
from features.survival_target import cause_label
from features.task_schema import UNIT_FACTORS_TO_DAYS
from features.task_spec import NAME, SPEC_FILE, TaskSpec, dotted

UNITS = ("days", "months", "years")
_TRUE_FALSE = {"true", "false", "yes", "no", "y", "n", "t", "f", "0", "1"}
_TRUE = {"true", "yes", "y", "t", "1"}
# Words in a column name that say the value is known only after time zero (an outcome, not a predictor).
LEAK_WORDS = {"relapse", "rel", "remission", "rec", "recovery", "transplant", "recurrence", "progression", "prog",
              "death", "dead", "died", "survival", "surv", "srv", "os", "efs", "rfs", "pfs", "dfs", "censor",
              "censored", "status", "event", "outcome", "followup", "follow", "fu", "time", "ae"}
_STATUS_SUFFIXES = ("_s", ".s", "_status", "_event", "_ind")
_DURATION_TO = re.compile(r"^(time|days|months|years)_to_")
# A column that numbers the rows or records is a key, not a predictor (the loader names people; this names rows).
_ROW_KEYS = re.compile(r"^(id|rownames|row|row_?(id|number|nr)|index|record|.*_id)$")
# Grouping columns: held-out centres, per-centre and per-country reports; never predictors.
GROUPING = ("centre", "country")
HORIZON_CANDIDATES = (3, 6, 12, 24, 36, 60, 120)
MANY_CATEGORIES = 20


class DraftError(ValueError):
    """Every reason the file cannot be drafted from, each naming its column (never its values)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s); no draft was written:\n{listed}")


@dataclass
class Draft:
    text: str
    leaking: list[str] = field(default_factory=list)  # columns kept out of the predictors, with the reason
    predictors: list[str] = field(default_factory=list)


# --- reading what a column holds ---------------------------------------------------------------------------

def _present(values: pd.Series) -> pd.Series:
    text = values.dropna().astype(str).str.strip()
    return text[text != ""]


def column_kind(values: pd.Series) -> str:
    """number, boolean (true/false, yes/no, 0/1) or category, from the values present."""
    text = _present(values)
    if len(text) and set(text.str.lower()) <= _TRUE_FALSE and text.str.lower().nunique() <= 2:
        return "boolean"
    if len(text) and pd.to_numeric(text, errors="coerce").notna().all():
        return "number"
    return "category"


def leak_reason(name: str, columns: list[str]) -> str | None:
    """Why a column looks like something that happens after time zero, or None."""
    lowered = name.lower()
    for suffix in _STATUS_SUFFIXES:
        if lowered.endswith(suffix) and name[: -len(suffix)] in columns:
            return f"the status of {name[: -len(suffix)]!r} (a time and its status: an event after time zero)"
        if f"{name}{suffix}" in columns:
            return f"a time with its status column {name + suffix!r} (an event after time zero)"
    if _DURATION_TO.match(lowered):
        return "a time to an event (after time zero)"
    words = set(re.split(r"[_.\s]+", lowered))
    hit = sorted(words & LEAK_WORDS)
    return f"its name says {hit[0]!r}: an outcome, known only after time zero" if hit else None


_MONTH_YEAR = re.compile(r"^(?:(\d{4})[-/.](\d{1,2})|(\d{1,2})[-/.](\d{4}))$")
_YEAR_NAME = re.compile(r"(^|_)(year|yr)s?($|_)")
# "Mostly after": not before in 90 % of the rows both columns hold, and strictly after in half (ties are common
# when one of them is a year).
NOT_BEFORE, STRICTLY_AFTER = 0.9, 0.5


def _calendar(name: str, values: pd.Series) -> list[pd.Series | None] | None:
    """A date-like column as [day, month, year] numbers (None where finer than it records): exact dates,
    month/year (2019-03, 03/2019), or a year column (its name says year; 4-digit whole numbers). None otherwise."""
    text = _present(values)
    if not len(text):
        return None
    if len(date_valued_rows(values)) >= 0.8 * len(text):
        when = pd.to_datetime(text, errors="coerce", format="mixed", dayfirst=True).dropna()
        return [when.map(pd.Timestamp.toordinal).astype(float), when.dt.year * 12.0 + when.dt.month - 1,
                when.dt.year.astype(float)]
    parts = text.str.extract(_MONTH_YEAR).astype(float)
    year, month = parts[0].fillna(parts[3]), parts[1].fillna(parts[2])
    if (month.between(1, 12)).mean() >= 0.8:
        keep = month.between(1, 12)
        return [None, (year * 12 + month - 1)[keep], year[keep]]
    numbers = pd.to_numeric(text, errors="coerce")
    if _YEAR_NAME.search(name.lower()) and numbers.between(1900, 2100).all() and (numbers % 1 == 0).all():
        return [None, None, numbers.astype(float)]
    return None


def _share_after(mine: list[pd.Series | None], theirs: list[pd.Series | None]) -> tuple[float, float] | None:
    """(share not before, share strictly after) at the finest level both record, over rows both hold."""
    level = max(next(i for i, s in enumerate(c) if s is not None) for c in (mine, theirs))
    a, b = mine[level], theirs[level]
    assert a is not None and b is not None
    both = a.index.intersection(b.index)
    if len(both) < 5:
        return None
    return float((a[both] >= b[both]).mean()), float((a[both] > b[both]).mean())


def later_date_columns(frame: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """Date-like columns whose values mostly fall after those of every other date-like column (a relapse date
    after the transplant date): what happens after time zero. Only with two or more date-like columns."""
    dated = {name: found for name in columns if (found := _calendar(name, frame[name])) is not None}
    later = {}
    for name, mine in dated.items():
        shares = {other: _share_after(mine, theirs) for other, theirs in dated.items() if other != name}
        if shares and all(s and s[0] >= NOT_BEFORE and s[1] >= STRICTLY_AFTER for s in shares.values()):
            others = ", ".join(repr(other) for other in shares)
            later[name] = (f"its dates mostly fall after those of {others} (a date later than the others: after "
                           "time zero)")
    return later


def _refusal(name: str, values: pd.Series) -> str | None:
    if is_identifier_like(name):
        return f"column {name!r}: {IDENTIFIER_RULE}"
    dated = date_valued_rows(values)
    if dated:
        return (f"column {name!r}: its values are exact dates ({len(dated)} value(s), first in row {dated[0]}), a "
                "direct identifier; export durations from time zero instead (e.g. <what>_months), or remove it")
    if name.lower() == "center":
        return f"column {name!r}: a centre code is a grouping column, never a predictor: rename it 'centre'"
    if _ROW_KEYS.match(name.lower()):
        return f"column {name!r}: a record or row key, not a predictor: remove it from the file"
    if not re.match(NAME, name):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        return (f"column {name!r}: a task's column names are lower-case letters, digits and _: rename it "
                f"(e.g. {suggestion!r}) in the file")
    if _present(values).nunique() < 2:
        return f"column {name!r}: the same value (or none) for every patient, nothing to learn: remove it"
    return None


# --- writing TOML ------------------------------------------------------------------------------------------

def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 2)


def _column_lines(name: str, values: pd.Series, purpose: str) -> tuple[list[str], list[str]]:
    """(key lines, CONFIRM comments) of one column, inferred from its values."""
    kind = column_kind(values)
    text = _present(values)
    lines = [f"name = {_toml(name)}", f'kind = "{kind}"',
             f"description = {_toml(f'{name} ({purpose}, drafted from the file)')}"]
    confirm = [f"# CONFIRM: {name}: write what it means and how it is measured (description)"]
    if kind == "number":
        numbers = pd.to_numeric(text)
        unit = next((u for u in UNITS if name.endswith(f"_{u}")), None)
        if unit:
            others = [u for u in UNITS if u != unit]
            lines += [f'unit = "{unit}"', f"unit_suffixes = {_toml([unit, *others])}"]
        else:
            confirm.append(f"# CONFIRM: {name}: no unit suffix (_days, _months, _years): give its unit if it has one")
        low, high = math.floor(numbers.min()), math.ceil(numbers.max())
        lines += [f"minimum = {low}", f"maximum = {high}", f"example = {_toml(_number(numbers.median()))}"]
        confirm.append(f"# CONFIRM: {name}: range {low} to {high} is what the file holds (rounded outward); widen it "
                       "to what is clinically possible")
    elif kind == "boolean":
        lines.append(f"example = {_toml(text.str.lower().mode().iloc[0] in _TRUE)}")
    else:
        categories = sorted(text.unique().tolist())
        lines += [f"categories = {_toml(categories)}", f"example = {_toml(text.mode().iloc[0])}"]
        if len(categories) > MANY_CATEGORIES:
            confirm.append(f"# CONFIRM: {name}: {len(categories)} categories: free text? group them or remove it")
    missing = len(values) - len(text)
    if missing:
        lines.append("required = false")
        confirm.append(f"# CONFIRM: {name}: optional ({missing} of {len(values)} missing)")
    return lines, confirm


def _block(header: str, lines: list[str], confirm: list[str], commented: bool = False) -> str:
    body = [header, *lines]
    if commented:
        body = [f"# {line}" for line in body]
    return "\n".join([*confirm, *body]) + "\n"


# --- the outcome -------------------------------------------------------------------------------------------

def _time_column(time: str) -> tuple[str, list[str], str | None]:
    """(spec time column, time_unit_suffixes, CONFIRM note): a `_days`/`_years` file column is read in months."""
    for unit in UNITS:
        if time.endswith(f"_{unit}"):
            stem = time[: -len(unit) - 1]
            return f"{stem}_months", ([unit] if unit != "months" else []), None
    return time, [], (f"# CONFIRM: the time column {time!r} has no unit suffix and is read as MONTHS; if it is in "
                      f"days or years, rename it {time}_days or {time}_years in the file and draft again")


def _outcome_problems(frame: pd.DataFrame, time: str, event: str, causes: str | None) -> list[str]:
    named = [("TIME", time), ("EVENT", event), *([("CAUSES", causes)] if causes else [])]
    problems = [f"{what} column {name!r} is not in the file" for what, name in named if name not in frame.columns]
    problems += [f"column {name!r}: {reason}" for _, name in named if name in frame.columns
                 and (reason := None if re.match(NAME, name) else "rename it with lower-case letters, digits and _")]
    if problems:
        return problems
    times = pd.to_numeric(frame[time], errors="coerce")
    if times.isna().any() or (times < 0).any():
        problems.append(f"TIME column {time!r}: every row needs a number of 0 or more")
    codes = pd.to_numeric(frame[event], errors="coerce")
    if causes and not codes.isin([0, 1]).all():
        problems.append(f"EVENT column {event!r}: with CAUSES= every row needs 0 (censored) or 1 (an event)")
    elif causes and not _cause_names(frame, event, causes):
        problems.append(f"CAUSES column {causes!r}: no row with an event ({event} = 1) names a cause")
    elif codes.isna().any() or (codes % 1 != 0).any() or (codes < 0).any():
        problems.append(f"EVENT column {event!r}: every row needs 0 (censored) or a cause code 1..K")
    elif sorted(set(codes.astype(int))) != list(range(int(codes.max()) + 1)):
        problems.append(f"EVENT column {event!r}: codes must be 0..K with every cause present; got "
                        f"{sorted(set(codes.astype(int)))}")
    return problems


def _cause_names(frame: pd.DataFrame, event: str, causes: str) -> dict[str, str]:
    """The cause column's labels on event rows (as the loader compares them) -> a cause name: a text label
    sanitised (`Death (other)` -> `death_other`), a code `cause_<code>`; names made unique."""
    events = pd.to_numeric(frame[event], errors="coerce") == 1
    labels = sorted({cause_label(v) for v in _present(frame.loc[events, causes])},
                    key=lambda label: (not label.isdigit(), int(label) if label.isdigit() else 0, label))
    names: dict[str, str] = {}
    for label in labels:
        name = re.sub(r"[^a-z0-9]+", "_", label).strip("_")
        name = name if re.match(NAME, name) else f"cause_{name}".rstrip("_")
        unique, k = name, 2
        while unique in {*names.values(), "event_free"}:
            unique, k = f"{name}_{k}", k + 1
        names[label] = unique
    return names


def _horizons(times_in_months: pd.Series) -> tuple[list[int], int]:
    """Horizons the file can judge: up to the 75th percentile of follow-up; the main one near the median."""
    reach = float(times_in_months.quantile(0.75))
    horizons = [h for h in HORIZON_CANDIDATES if h <= reach][-5:] or [max(1, math.floor(reach))]
    median = float(times_in_months.median())
    main = max([h for h in horizons if h <= median] or horizons[:1])
    return horizons, main


def _outcome_text(task: str, time: str, event: str, frame: pd.DataFrame, cause_column: str | None) -> str:
    time_column, suffixes, time_note = _time_column(time)
    unit = next((u for u in UNITS if time.endswith(f"_{u}")), "months")
    months = pd.to_numeric(frame[time]) * UNIT_FACTORS_TO_DAYS[unit] / UNIT_FACTORS_TO_DAYS["months"]
    horizons, main = _horizons(months)
    labels = _cause_names(frame, event, cause_column) if cause_column else {}
    n_causes = len(labels) if cause_column else int(pd.to_numeric(frame[event]).max())
    competing = n_causes > 1
    causes = ["event"] if not competing else [f"cause_{k}" for k in range(1, n_causes + 1)]
    causes = list(labels.values()) if competing and labels else causes
    first, what = causes[0], "each cause" if competing else "the event"
    parts = [
        f"# Drafted by `make task` from a registry file. Review every '# CONFIRM' line, then: make validate "
        f"TASK={task} DATA=<file>",
        f"title = {_toml(f'{task} (drafted: give it a title)')}",
        "# CONFIRM: when does the clock start? Every predictor must be known then, never after.",
        'time_zero = "time zero (drafted: say when the clock starts, e.g. the day of transplant)"',
        f"# CONFIRM: horizons the follow-up supports (75% of patients are followed {months.quantile(0.75):.1f} "
        "months or longer, or had the event)",
        f"horizons_months = {_toml(horizons)}",
        f"main_horizon_months = {main}",
        f'explained_endpoint = "{first}"',
        "",
        "[use]",
        "# CONFIRM: who uses it, for whom, and what it must not be used for",
        'intended_use = "Drafted from a registry file: say what the model estimates, for whom and why."',
        'users_and_limits = "Drafted: say who uses it and for whom it must not be used."',
        "",
        "[outcome]",
        f'kind = "{"competing_risks" if competing else "single_event"}"',
        *([time_note] if time_note else []),
        f"time_column = {_toml(time_column)}",
        *([f"time_unit_suffixes = {_toml(suffixes)}"] if suffixes else []),
        f"event_column = {_toml(event)}",
        *(_cause_column_lines(event, cause_column) if cause_column else
          [f"# CONFIRM: {event} holds 0 = censored, " + ", ".join(f"{k} = {c}" for k, c in enumerate(causes, 1))]),
        f"event_description = {_toml(f'drafted: say what {what} is')}",
        "",
    ]
    for code, cause in enumerate(causes, 1):
        parts += ["[[causes]]", f"code = {code}", f'name = "{cause}"', f'description = "{cause} (drafted: name it)"']
        mine = [label for label, name in labels.items() if name == cause or not competing]
        if mine:
            coded = any(label.isdigit() for label in mine)
            parts += [f"labels = {_toml(mine)}"]
            parts += [f"# CONFIRM: {cause_column} code {mine[0]}: name this cause"] if coded and competing else []
        parts += [""]
    for cause in causes:
        parts += ["[[endpoints]]", f'name = "{cause}"', 'kind = "incidence"',
                  f'description = "cumulative incidence of {cause}"', f'plot_title = "Incidence of {cause}"',
                  f'answer_phrase = "{cause}"', ""]
    parts += ["[[endpoints]]", 'name = "event_free"', 'kind = "survival"',
              'description = "probability of no event by t months"', 'plot_title = "Event-free survival"',
              'answer_phrase = "staying event-free"', *([f'complement_of = "{first}"'] if not competing else []), ""]
    return "\n".join(parts) + "\n"


def _cause_column_lines(event: str, cause_column: str) -> list[str]:
    return [f"# CONFIRM: {event} holds 0 = censored, 1 = an event; {cause_column} says which cause (the labels of "
            "each cause below), empty when censored",
            'event_coding = "binary"', f"cause_column = {_toml(cause_column)}"]


# --- the draft ---------------------------------------------------------------------------------------------

def draft_spec(frame: pd.DataFrame, task: str, time: str, event: str, causes: str | None = None) -> Draft:
    """The draft task.toml of a registry frame (text columns as read), or DraftError with every problem.
    `causes`: the column naming the cause of each event (EVENT then holds 0/1); never a predictor."""
    problems = [] if re.match(NAME, task) else [f"task name {task!r}: use lower-case letters, digits and _"]
    problems += _outcome_problems(frame, time, event, causes)
    others = [str(c) for c in frame.columns if c not in (time, event, causes)]
    later = later_date_columns(frame, others)
    problems += [reason + (f"; it also looks like what happens after time zero: {later[name]}" if name in later
                           else "") for name in others if (reason := _refusal(name, frame[name]))]
    if problems:
        raise DraftError(problems)
    draft = Draft(_outcome_text(task, time, event, frame, causes))
    leaks = {name: "; and ".join(reasons) for name in others
             if (reasons := [r for r in (leak_reason(name, [str(c) for c in frame.columns]), later.get(name)) if r])}
    for name, reason in leaks.items():
        lines, _ = _column_lines(name, frame[name], "recorded after time zero")
        draft.text += _block("[[outcome.columns]]", lines, [f"# LEAKING THE FUTURE: {name}: {reason}; kept as an "
                                                            "outcome column, not a predictor"]) + "\n"
        draft.leaking.append(f"{name}: {reason}")
    for name in (n for n in others if n in GROUPING):
        described = _toml(f"{name} code (grouping only, never a predictor)")
        lines = [f"name = {_toml(name)}", 'kind = "text"', "required = false", f"description = {described}"]
        draft.text += _block("[[grouping]]", lines, []) + "\n"
    for name in (n for n in others if n not in GROUPING):
        lines, confirm = _column_lines(name, frame[name], "a predictor known at time zero")
        if name in leaks:
            note = [f"# CONFIRM: LEAKING THE FUTURE? {name}: {leaks[name]}. Only if it is known at time zero: "
                    "delete its [[outcome.columns]] block above and uncomment this one."]
            draft.text += _block("[[predictors]]", lines, note, commented=True) + "\n"
        else:
            draft.text += _block("[[predictors]]", lines, confirm) + "\n"
            draft.predictors.append(name)
    if not draft.predictors:
        raise DraftError(["no column is left as a predictor (every one looks recorded after time zero): keep the "
                          "columns known at time zero in the file"])
    _check_loads(draft.text)
    return draft


def _check_loads(text: str) -> None:
    """A draft is only written when it loads as written (e.g. a file column `rfs_months` beside TIME=rfs_days
    would make two columns of one name)."""
    try:
        problems = [f"{dotted(where)}: {reason}" for where, reason in
                    TaskSpec.model_validate(tomllib.loads(text)).problems()]
    except ValidationError as error:
        problems = [f"{dotted(tuple(e['loc']))}: {e['msg']}" for e in error.errors()]
    if problems:
        raise DraftError([f"the draft would not load: {p}" for p in problems])


def write_draft(draft: Draft, task: str, tasks_dir: Path) -> Path:
    """Write `tasks_dir/<task>/task.toml`; an existing folder is never overwritten."""
    folder = tasks_dir / task
    if folder.exists():
        raise DraftError([f"{folder} already exists: choose another NAME, or move the folder away first"])
    folder.mkdir(parents=True)
    path = folder / SPEC_FILE
    path.write_text(draft.text, encoding="utf-8")
    return path


def draft_task(data: str | Path, task: str, time: str, event: str, tasks_dir: Path, causes: str | None = None,
               **read_options: str | None) -> tuple[Draft, Path]:
    """Read the file (format detected as for training), draft its spec and write it to a new task folder."""
    frame = read_table(data, **read_options)
    frame.columns = [str(c).strip() for c in frame.columns]
    draft = draft_spec(frame, task, time, event, causes)
    return draft, write_draft(draft, task, tasks_dir)
