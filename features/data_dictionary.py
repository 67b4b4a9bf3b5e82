"""The data dictionary of a task, generated from its schema: what a registry file must hold, field by field.

`data_dictionary_markdown(task)` is the one source of docs/data-dictionary/<task>.md (committed, and a test
checks it equals the generated text) and of `make data-dictionary TASK=...`. Nothing here is written by hand
twice: names, meanings, units, types, ranges, categories, required flags, unit variants, outcome columns and
the identifier policy all come from the schema and the registry-file loader.
"""

from __future__ import annotations

from pathlib import Path

from features.registry_file import PSEUDO_ID_COLUMN
from features.task_schema import Predictor, TaskSchema, unit_variant
from features.tasks import TASKS, Task

DOCS_FOLDER = Path(__file__).resolve().parents[1] / "docs" / "data-dictionary"

_TYPES = {"number": "number", "category": "category", "boolean": "true/false", "text": "text"}
_MISSING_OPTIONAL = ("optional: leave empty when unknown (xgboost handles missing values natively; the Cox baseline "
                     "imputes the training median or mode and adds a missing-indicator column)")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _allowed(p: Predictor) -> str:
    if p.kind == "number":
        unit = f" {p.unit}" if p.unit else ""
        low = "-inf" if p.minimum is None else f"{p.minimum:g}"
        high = "inf" if p.maximum is None else f"{p.maximum:g}"
        return f"{low} to {high}{unit}" + (", a whole number" if p.whole_number else "")
    if p.kind == "category":
        return _code_list(p.categories)
    if p.kind == "boolean":
        return "`true`, `false` (also `1`/`0`, `yes`/`no`)"
    return "free text (up to 64 characters in a request)"


def _unit_variants(name: str, unit: str | None, suffixes: tuple[str, ...]) -> str:
    if not suffixes or not unit:
        return ""
    variants = [unit_variant(name, unit, s) for s in suffixes if s != unit]
    if not variants:
        return ""
    return f"{_code_list(variants)} (converted to {unit})"


def _predictor_rows(schema: TaskSchema, fields: tuple[Predictor, ...], derived: set[str], grouping: bool
                    ) -> list[str]:
    rows = ["| field | meaning | unit | type | allowed values or range | required | if missing | "
            "accepted unit variants |", "|---|---|---|---|---|---|---|---|"]
    for p in fields:
        if grouping:
            missing = "optional: without it (or with fewer than 3 centres) the split is by patient"
        elif p.name in derived:
            missing = "derived: computed by the loader when the column is absent; empty when not computable"
        elif p.name in schema.strata:
            missing = ("required: an empty value is an error; stratifies the baseline (each value its own "
                       "baseline hazard, no coefficient in the Cox model; a value no training patient had is "
                       "refused)")
        elif p.required:
            missing = "required: an empty value is an error"
        else:
            missing = _MISSING_OPTIONAL
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{p.name}`", p.description, p.unit or "", _TYPES[p.kind], _allowed(p),
            "yes" if p.required else "no", missing, _unit_variants(p.name, p.unit, p.unit_suffixes))) + " |")
    return rows


def _outcome_rows(schema: TaskSchema) -> list[str]:
    rows = ["| column | meaning | unit | type | allowed values or range | required | accepted unit variants |",
            "|---|---|---|---|---|---|---|"]
    time_meaning = f"Months from {schema.time_zero} to the event, or to the last follow-up when censored"
    rows.append("| " + " | ".join(_cell(c) for c in (
        f"`{schema.time_column}`", time_meaning, "months", "number", "0 or more months", "yes",
        _unit_variants(schema.time_column, "months", schema.time_unit_suffixes))) + " |")
    codes = range(schema.event_codes + 1)
    # One cause: the description is the event's; several: it names each code itself.
    meaning = (f"1 = {schema.event_description}" if schema.event_codes == 1 else schema.event_description)
    rows.append("| " + " | ".join(_cell(c) for c in (
        f"`{schema.event_column}`", f"{meaning}; 0 = censored (event-free when last seen)",
        "", "number", ", ".join(f"`{code}`" for code in codes), "yes", "")) + " |")
    for p in schema.extra_outcome_columns:
        required = "column yes; value " + ("required" if p.required else "may be empty")
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{p.name}`", p.description, p.unit or "", _TYPES[p.kind], _allowed(p), required,
            _unit_variants(p.name, p.unit, p.unit_suffixes))) + " |")
    return rows


def data_dictionary_markdown(task: Task | str) -> str:
    """The task's data dictionary as Markdown (deterministic: the same schema gives the same text)."""
    task = TASKS[task] if isinstance(task, str) else task
    schema = task.schema
    derived = {name for name, _ in schema.derived_predictors}
    lines = [
        f"# Data dictionary: `{schema.task}`",
        "",
        f"{schema.title}. Schema version {schema.version}. Generated from `features/` by "
        f"`make data-dictionary TASK={schema.task}`; do not edit by hand.",
        "",
        "## The file",
        "",
        "- One row per patient, as CSV (with a header row) or Parquet, with the column names below. For CSV the "
        "separator (`,` `;` tab `|`), the decimal mark (`.` or `,`) and the encoding (UTF-8, UTF-16, Windows-1252, "
        "Latin-1) are detected and reported, or given (`SEP=`, `DECIMAL=`, `ENCODING=`).",
        "- Column names and category labels that differ from those below only in case or surrounding spaces are "
        "matched, and the report says so; a near miss is refused with the closest name (\"did you mean\").",
        f"- Time zero: {schema.time_zero}. Every predictor must be known at time zero; nothing measured after it "
        "(follow-up, response to the transplant or treatment, the outcome) may be sent as a predictor.",
        f"- Event: {schema.event_description}. Event times in months.",
        f"- Horizons: {', '.join(str(h) for h in schema.horizons_months)} months "
        f"(main: {schema.main_horizon_months} months).",
        f"- Check a file without training: `make validate TASK={schema.task} DATA=file.csv`; train on it: "
        f"`make train TASK={schema.task} DATA=file.csv`. Every problem is reported at once (row, column, value, "
        "rule) and nothing is trained from a file that fails.",
        "",
        "## Predictors (known at time zero)",
        "",
        *_predictor_rows(schema, schema.predictors, derived, grouping=False),
        "",
    ]
    if schema.strata:
        lines += [f"Strata: {_code_list(schema.strata)}. Each value (each combination of values) has its own "
                  "baseline hazard for every cause, in both model families, so proportional hazards need to hold "
                  "only within a stratum; a request with a value that no training patient had is refused.", ""]
    if schema.cross_field_rules:
        lines += ["Rules across fields (a row that breaks one is reported):", ""]
        lines += [f"- {rule.name}" for rule in schema.cross_field_rules]
        lines.append("")
    lines += [
        "## Grouping fields (never predictors)",
        "",
        "They drive the splits (whole centres held out, never split) and the subgroup reports; a model never "
        "sees them. They hold codes, which the run stores: a value that looks like a person's name or e-mail, a "
        "long number (7 or more digits), a date, or a column with at least 10 distinct values and more than one "
        "per two patients is refused; `country` is an ISO 3166 alpha-2 code (read in capitals).",
        "",
        *_predictor_rows(schema, schema.grouping, derived, grouping=True),
        "",
        "## Outcome columns",
        "",
        "The loader derives each endpoint's target (months, event code) from these columns. Censored patients "
        "stay in: 0 means event-free when last seen, never \"no event\".",
        "",
        *_outcome_rows(schema),
        "",
        "Endpoints the model answers:",
        "",
    ]
    for name, kind in schema.endpoint_names.items():
        meaning = schema.endpoint_descriptions.get(name, "")
        lines.append(f"- `{name}` ({kind}){': ' + meaning if meaning else ''}")
    lines += [
        "",
        "## Units",
        "",
        "Event times are in months everywhere. A duration column may come in another unit when its name says "
        "so by suffix (`_days`, `_months`, `_years`), where the tables above list the variant: the loader "
        "converts it (1 year = 365.25 days, 1 month = 365.25/12 days) and the training run records each "
        "conversion (tag `unit_conversions`). Any other unit is refused as an unknown column.",
        "",
        "## Identifiers",
        "",
        f"- `{PSEUDO_ID_COLUMN}` (optional) may keep a patient's rows together; it is dropped on reading and "
        "never stored in any artifact.",
        "- Any other column that is not listed here is refused and named. Columns that identify a person "
        "directly are named as such: names or initials, dates of birth, hospital, national, insurance or "
        "medical-record numbers, addresses, phone numbers, e-mail addresses, and exact dates (by their name, "
        "e.g. `transplant_date`, or by their values, e.g. `2019-03-04`, whatever the column is called). Send "
        "durations from time zero instead of dates.",
        "- Identifier values are never echoed in a report.",
        "",
    ]
    extract = task.public_extract
    if extract is not None:
        lines += [
            f"## Public extract: `{extract.name}`",
            "",
            f"Without `DATA=`, `make train TASK={schema.task}` trains on {extract.source}",
            "",
            extract.caveat,
            "",
            f"The adapter (`{extract.adapter}`) writes it as a registry file of this task "
            f"(`data/{extract.file_name}`), which goes through the same loader and validation as any other:",
            "",
            "| extract column | file column | how |",
            "|---|---|---|",
            *[f"| {_cell(src)} | {_cell(dst)} | {_cell(how)} |" for src, dst, how in extract.mapping],
            "",
        ]
    return "\n".join(lines)


def dictionary_path(task: str, folder: Path | None = None) -> Path:
    return (folder or DOCS_FOLDER) / f"{task}.md"


def write_data_dictionaries(folder: Path | None = None) -> list[Path]:
    """Write every task's dictionary to docs/data-dictionary/<task>.md (or `folder`); returns the paths."""
    folder = folder or DOCS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in TASKS:
        path = dictionary_path(name, folder)
        path.write_text(data_dictionary_markdown(name))
        paths.append(path)
    return paths
