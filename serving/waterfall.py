"""The waterfall chart of one patient's explanation, as PNG: from the average training patient to this patient.

Bars are coloured by what a contribution means for the patient, not by its sign: for an incidence endpoint
(relapse, NRM) raising the probability is bad news, for a survival endpoint (OS, LFS, ...) it is good news, and a
legend says so. Values read as on the risk-calculator page (yes/no, units, "not given").

matplotlib is imported on the first chart, not at start: serving starts without it (clarifications §6). The
figure is built without pyplot (no global state shared between concurrent requests).
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

SHOWN_PREDICTORS = 12
WORSE, BETTER, TOTAL, NEGLIGIBLE = "#c0392b", "#2471a3", "#52606d", "#aab7b8"
WIDTH_INCHES, ROW_INCHES, LINE_INCHES, DPI = 9.0, 0.3, 0.17, 100
NOTE_CHARACTERS = 120  # a wrapped warning line at 8 pt fits the 9-inch width with room to spare
FONT_SIZE = 8


def value_text(item: dict[str, Any]) -> str:
    """A predictor's value as the page shows it (serving/static/calculator.js `valueText`)."""
    value = item["value"]
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        shown = str(int(value)) if float(value).is_integer() else f"{value:.6g}"
        return f"{shown} {item['units']}" if item.get("units") else shown
    return str(value)


def _points(points: float) -> str:
    return f"{'+' if points >= 0 else '−'}{abs(points):.2f} pp"


def _steps(explanation: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, percentage points) largest first; the smallest predictors merged into one step."""
    items = sorted(explanation["items"], key=lambda item: -abs(item["percentage_points"]))
    steps = [(f"{item['feature']} = {value_text(item)}", item["percentage_points"])
             for item in items[:SHOWN_PREDICTORS]]
    rest = items[SHOWN_PREDICTORS:]
    if len(rest) == 1:  # one more bar rather than a bar saying "1 other predictors"
        steps.append((f"{rest[0]['feature']} = {value_text(rest[0])}", rest[0]["percentage_points"]))
    elif rest:
        steps.append((f"{len(rest)} other predictors", sum(item["percentage_points"] for item in rest)))
    return steps


def _meaning(explanation: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Colour and legend text of raising and of lowering the explained probability, for this endpoint's kind."""
    words = explanation["explained"]
    if explanation["kind"] == "survival":
        return {"raises": (BETTER, f"better for the patient: raises the {words}"),
                "lowers": (WORSE, f"worse for the patient: lowers the {words}")}
    return {"raises": (WORSE, f"worse for the patient: raises the {words}"),
            "lowers": (BETTER, f"better for the patient: lowers the {words}")}


def _rows(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every bar: the average training patient, one per step, this patient; start and end in percent."""
    base = 100.0 * explanation["base_value"]
    rows = [{"label": "average training patient", "start": 0.0, "end": base, "text": f"{base:.1f} %",
             "kind": "total"}]
    running = base
    for label, points in _steps(explanation):
        kind = "none" if abs(points) < 0.005 else "raises" if points > 0 else "lowers"
        rows.append({"label": label, "start": running, "end": running + points, "text": _points(points),
                     "kind": kind})
        running += points
    final = 100.0 * explanation["probability"]
    rows.append({"label": "this patient", "start": 0.0, "end": final, "text": f"{final:.1f} %", "kind": "total"})
    return rows


def _notes(explanation: dict[str, Any]) -> list[str]:
    """The answer's warnings, wrapped: a chart shown on its own still says when to read it with caution."""
    lines = []
    for warning in explanation.get("warnings") or []:
        field = f"{warning['field']}: " if warning.get("field") else ""
        lines += textwrap.wrap(f"• {field}{warning['message']}", NOTE_CHARACTERS, subsequent_indent="   ")
    return ["Read with caution:", *lines] if lines else []


def waterfall_figure(explanation: dict[str, Any]) -> Any:
    """The chart as a matplotlib Figure, laid out and drawn (so its texts have their final places)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows, meaning, notes = _rows(explanation), _meaning(explanation), _notes(explanation)
    chart_inches = 1.6 + ROW_INCHES * len(rows)  # title, bars and axis
    # Below the chart, laid out by hand: the legend (3 lines), then the warnings.
    strip_inches = 0.15 + 3 * LINE_INCHES + (0.15 + LINE_INCHES * len(notes) if notes else 0.0)
    height = chart_inches + strip_inches
    figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(rect=(0.0, strip_inches / height, 1.0, 1.0 - strip_inches / height))
    axes = figure.add_subplot()
    labels = _draw_bars(axes, rows, meaning)
    axes.set_xlabel(f"{explanation['explained']} (%)", fontsize=9)
    figure.suptitle(_title(explanation), x=0.01, ha="left", fontsize=10)
    handles = [Patch(color=meaning[kind][0], label=meaning[kind][1]) for kind in ("raises", "lowers")]
    handles.append(Patch(color=TOTAL, label="the average training patient and this patient (totals)"))
    legend = figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.01, strip_inches / height),
                           fontsize=FONT_SIZE, frameon=False, borderaxespad=0.2)
    _fit_labels(figure, axes, rows, labels)
    if notes:  # under the legend as drawn, so they never overlap whatever its exact height
        below = legend.get_window_extent(figure.canvas.get_renderer()).y0 / (height * DPI)
        figure.text(0.01, below - 0.1 / height, "\n".join(notes), va="top", ha="left", fontsize=FONT_SIZE,
                    color="#7b241c", linespacing=1.35)
        figure.draw_without_rendering()
    return figure


def _draw_bars(axes: Any, rows: list[dict[str, Any]], meaning: dict[str, tuple[str, str]]) -> list[Any]:
    """The bars, their value labels (returned) right of each bar, the joints between bars, and the axes' look."""
    from matplotlib.ticker import FuncFormatter

    colours = {"total": TOTAL, "none": NEGLIGIBLE, **{kind: colour for kind, (colour, _) in meaning.items()}}
    labels = []
    for row, bar in enumerate(rows):
        low, high = sorted((bar["start"], bar["end"]))
        axes.barh(row, max(high - low, 1e-9), left=low, height=0.62, color=colours[bar["kind"]],
                  gid=f"bar:{bar['kind']}:{bar['label']}")
        labels.append(axes.annotate(bar["text"], xy=(high, row), xytext=(4, 0), textcoords="offset points",
                                    va="center", ha="left", fontsize=FONT_SIZE))
        if row + 1 < len(rows):  # the joint to the next bar, as on the page
            joint = rows[row + 1]["end"] if rows[row + 1]["kind"] == "total" else rows[row + 1]["start"]
            axes.plot([joint, joint], [row + 0.31, row + 0.69], color="#7f8c8d", linewidth=0.8, linestyle=":")
    axes.set_yticks(range(len(rows)), [bar["label"] for bar in rows], fontsize=FONT_SIZE)
    for tick in (axes.get_yticklabels()[0], axes.get_yticklabels()[-1]):
        tick.set_fontweight("bold")
    axes.set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} %"))
    axes.tick_params(axis="x", labelsize=FONT_SIZE)
    axes.grid(axis="x", color="#e5e8e8", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return labels


def _title(explanation: dict[str, Any]) -> str:
    words = explanation["explained"]
    line = (f"Why this estimate: {words[0].upper()}{words[1:]}, from the average training patient "
            f"({100 * explanation['base_value']:.1f} %) to this patient ({100 * explanation['probability']:.1f} %). "
            "Each bar is one predictor's contribution in percentage points (pp).")
    return textwrap.fill(line, 105)


def _fit_labels(figure: Any, axes: Any, rows: list[dict[str, Any]], labels: list[Any]) -> None:
    """Widen the value axis until every value label ends inside the axes (they sit right of their bars)."""
    low = min(0.0, *(min(bar["start"], bar["end"]) for bar in rows))
    ends = [max(bar["start"], bar["end"]) for bar in rows]
    high = max(ends) or 1.0
    axes.set_xlim(low, high)
    for _ in range(4):
        figure.draw_without_rendering()
        renderer = figure.canvas.get_renderer()
        box = axes.get_window_extent(renderer)
        scale = box.width / (high - low)  # pixels per percent
        overflow = [label.get_window_extent(renderer).x1 - box.x1 for label in labels]
        if max(overflow) <= 0:
            return
        # Pixels each label needs right of its anchor, then the span that gives every label that room.
        needed = [label.get_window_extent(renderer).x1 - (box.x0 + (end - low) * scale)
                  for label, end in zip(labels, ends, strict=True)]
        high = low + max((end - low) / max(1.0 - room / box.width, 0.2) for end, room in
                         zip(ends, needed, strict=True)) * 1.02
        axes.set_xlim(low, high)


def waterfall_png(explanation: dict[str, Any]) -> bytes:
    figure = waterfall_figure(explanation)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
