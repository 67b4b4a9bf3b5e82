"""The waterfall chart of one patient's explanation, as PNG: from the background mean to the patient's probability.

matplotlib is imported on the first chart, not at start: serving starts without it (clarifications §6).
"""

from __future__ import annotations

import io
from typing import Any

SHOWN_PREDICTORS = 12
RAISES, LOWERS = "#c0392b", "#2471a3"


def _label(item: dict[str, Any]) -> str:
    value = item["value"]
    if value is None:
        shown = "not recorded"
    elif isinstance(value, float):
        shown = f"{value:g}"
    else:
        shown = str(value)
    units = f" {item['units']}" if item.get("units") and value is not None else ""
    return f"{item['feature']} = {shown}{units}"


def _steps(explanation: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, percentage points) largest first; the smallest predictors merged into one step."""
    items = sorted(explanation["items"], key=lambda item: -abs(item["percentage_points"]))
    steps = [(_label(item), item["percentage_points"]) for item in items[:SHOWN_PREDICTORS]]
    rest = items[SHOWN_PREDICTORS:]
    if rest:
        steps.append((f"{len(rest)} other predictors", sum(item["percentage_points"] for item in rest)))
    return steps


def waterfall_png(explanation: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = _steps(explanation)
    base = 100.0 * explanation["base_value"]
    figure, axes = plt.subplots(figsize=(8.5, 1.2 + 0.42 * len(steps)), dpi=100)
    position = base
    for row, (_, points) in enumerate(steps):
        axes.barh(row, points, left=position, color=RAISES if points > 0 else LOWERS, height=0.6)
        axes.text(position + points + (0.15 if points >= 0 else -0.15), row, f"{points:+.2f}",
                  va="center", ha="left" if points >= 0 else "right", fontsize=8)
        position += points
    axes.set_yticks(range(len(steps)), [label for label, _ in steps], fontsize=8)
    axes.invert_yaxis()
    axes.axvline(base, color="grey", linestyle=":", linewidth=1)
    axes.axvline(position, color="black", linewidth=1)
    axes.set_xlabel(f"{explanation['explained']} (%): background mean {base:.1f} % → this patient "
                    f"{100 * explanation['probability']:.1f} %", fontsize=9)
    axes.set_title(f"Why this estimate: contributions in percentage points, {explanation['endpoint']} at "
                   f"{explanation['horizon_months']:g} months", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
