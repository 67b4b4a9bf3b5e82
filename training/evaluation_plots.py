"""Plots a reviewer asks for: calibration curves, decision curves and forest plots (matplotlib, Agg backend).

- Calibration: per horizon, the loess-smoothed observed risk (pseudo-observations on predicted risk) as a line,
  and risk-decile points with the Kaplan-Meier (or Aalen-Johansen) observed risk and its 95 % interval.
- Decision curves: net benefit of each family against treat-all and treat-none over the stated threshold range,
  with Kaplan-Meier (or Aalen-Johansen) risks, so censoring is handled.
- Forest plots: each left-out centre's estimate with its 95 % interval, and the random-effects pooled estimate
  (diamond) with its 95 % prediction interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.tasks import EndpointTarget
from training.evaluate import net_benefit, observed_risk, pseudo_observations, smoothed_calibration
from training.figures import pyplot, save_figure

FAMILY_COLOURS = {"cox_ph": "tab:blue", "xgboost_cox": "tab:orange"}


def _panels(count: int) -> tuple[Any, np.ndarray]:
    plt = pyplot()
    columns = min(count, 3)
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(max(4.6 * columns, 7.5), 4.3 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def decile_points(target: EndpointTarget, risk: np.ndarray, horizon: float, n_groups: int = 10
                  ) -> pd.DataFrame:
    """Mean predicted vs observed risk (KM / AJ) by predicted-risk decile, with a 95 % interval per decile."""
    time_, code = np.asarray(target.months, float), np.asarray(target.code)
    groups = pd.qcut(risk, q=n_groups, labels=False, duplicates="drop")
    rows = []
    for g in np.unique(groups):
        inside = groups == g
        observed = observed_risk(time_[inside], code[inside], target.event_of_interest, horizon)
        pseudo = pseudo_observations(time_[inside], code[inside], horizon, target.event_of_interest)
        se = float(np.std(pseudo, ddof=1) / np.sqrt(inside.sum())) if inside.sum() > 1 else np.nan
        rows.append({"predicted": float(risk[inside].mean()), "observed": observed,
                     "lower": max(0.0, observed - 1.96 * se), "upper": min(1.0, observed + 1.96 * se),
                     "n": int(inside.sum())})
    return pd.DataFrame(rows)


def calibration_figure(predictions: dict[str, dict[int, np.ndarray]], target: EndpointTarget,
                       horizons: list[int], endpoint: str, path: Path, subtitle: str = "") -> Path:
    """`predictions[family][h]` are held-out risks at horizon h; one panel per horizon."""
    fig, axes = _panels(len(horizons))
    time_, code = np.asarray(target.months, float), np.asarray(target.code)
    for ax, h in zip(axes, horizons, strict=False):
        pseudo = pseudo_observations(time_, code, h, target.event_of_interest)
        upper = 0.05
        for family, by_horizon in predictions.items():
            risk = by_horizon[h]
            colour = FAMILY_COLOURS.get(family)
            order = np.argsort(risk)
            smooth = smoothed_calibration(pseudo, risk)
            gap = np.abs(smooth - risk)
            ax.plot(risk[order], smooth[order], "-", color=colour, lw=1.5,
                    label=f"{family}: loess (ICI {gap.mean():.3f}, E50 {np.median(gap):.3f})")
            points = decile_points(target, risk, h)
            ax.errorbar(points["predicted"], points["observed"],
                        # clipped: an observed risk a rounding error above 1 must not make a bar negative
                        yerr=np.clip([points["observed"] - points["lower"], points["upper"] - points["observed"]],
                                     0, None),
                        fmt="o", color=colour, ms=4, capsize=2, lw=0.8)
            upper = max(upper, float(np.quantile(risk, 0.99)), float(points["upper"].max()))
        upper = min(1.0, upper * 1.1)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlim=(0, upper), ylim=(0, upper), title=f"{endpoint}, {h} months",
               xlabel="predicted risk", ylabel="observed risk (KM / Aalen-Johansen)")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Calibration of {endpoint} risk: loess of pseudo-observations and risk deciles (95 % CI)"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    return save_figure(fig, path, dpi=100)


def decision_curve_table(predictions: dict[str, dict[int, np.ndarray]], target: EndpointTarget,
                         horizons: list[int], thresholds: np.ndarray) -> pd.DataFrame:
    """Net benefit per family, threshold and horizon, with treat-all and treat-none."""
    time_, code = np.asarray(target.months, float), np.asarray(target.code)
    frames = []
    for family, by_horizon in predictions.items():
        for h in horizons:
            curve = net_benefit(time_, code, by_horizon[h], h, thresholds, target.event_of_interest)
            frames.append(curve.assign(family=family, horizon_months=h))
    return pd.concat(frames, ignore_index=True)


def decision_curve_figure(table: pd.DataFrame, endpoint: str, path: Path, subtitle: str = "") -> Path:
    horizons = sorted(table["horizon_months"].unique())
    fig, axes = _panels(len(horizons))
    for ax, h in zip(axes, horizons, strict=False):
        part = table[table["horizon_months"] == h]
        first = part[part["family"] == part["family"].iloc[0]]
        for family, curve in part.groupby("family"):
            ax.plot(curve["threshold"], curve["model"], color=FAMILY_COLOURS.get(family), lw=1.5, label=family)
        ax.plot(first["threshold"], first["treat_all"], color="grey", lw=1, label="treat all")
        ax.axhline(0.0, color="black", lw=1, label="treat none")
        top = max(0.01, float(part[["model", "treat_all"]].max().max()) * 1.15)
        ax.set(ylim=(-0.25 * top, top), title=f"{endpoint}, {h} months", xlabel="threshold risk",
               ylabel="net benefit")
        ax.legend(fontsize=7)
    fig.suptitle(f"Decision curves for {endpoint} (KM / Aalen-Johansen risk among those above the threshold)"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    return save_figure(fig, path, dpi=100)


def forest_figure(per_cluster: pd.DataFrame, pooled: pd.DataFrame, metric: str, endpoint: str, path: Path,
                  reference: float, subtitle: str = "") -> Path:
    """One panel per horizon (one panel for C); each family offset vertically; pooled diamond + PI."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from training.validation import METRIC_SCALE

    rows = per_cluster[(per_cluster["metric"] == metric) & (per_cluster["endpoint"] == endpoint)]
    horizons = sorted(rows["horizon"].unique(), key=lambda v: -1 if pd.isna(v) else v)
    fig, axes = _panels(len(horizons))
    clusters = sorted(rows["cluster"].unique())
    families = sorted(rows["family"].unique())
    label = {"uno_c": "Uno's C", "cal_oe": "O/E", "cal_slope": "calibration slope"}[metric]
    for ax, h in zip(axes, horizons, strict=False):
        at_h = rows[rows["horizon"].isna()] if pd.isna(h) else rows[rows["horizon"] == h]
        for offset, family in enumerate(families):
            shift = (offset - (len(families) - 1) / 2) * 0.25
            part = at_h[at_h["family"] == family].set_index("cluster")
            colour = FAMILY_COLOURS.get(family)
            for y, cluster in enumerate(clusters):
                if cluster not in part.index:
                    continue
                if part.loc[cluster, "skipped_reason"]:
                    if offset == 0:
                        ax.annotate("not evaluable", (0.02, y), xycoords=("axes fraction", "data"), fontsize=6,
                                    color="grey", va="center")
                    continue
                estimate, se = float(part.loc[cluster, "estimate"]), float(part.loc[cluster, "se"])
                lower, upper = _interval(metric, estimate, se)
                ax.errorbar(estimate, y + shift, xerr=[[estimate - lower], [upper - estimate]], fmt="s",
                            color=colour, ms=3, lw=0.8)
            summary = pooled[(pooled["family"] == family) & (pooled["endpoint"] == endpoint)
                             & (pooled["metric"] == metric)
                             & (pooled["horizon"].isna() if pd.isna(h) else pooled["horizon"] == h)]
            legend = family
            if len(summary) and np.isfinite(summary["estimate"].iloc[0]):
                s = summary.iloc[0]
                y = len(clusters) + 0.5 + shift
                if not np.isfinite(s.lower):  # K-fold: a mean over folds, no interval
                    ax.plot([s.estimate], [y], "D", color=colour)
                    legend = f"{family}: mean over folds {s.estimate:.2f}"
                else:
                    ax.fill([s.lower, s.estimate, s.upper, s.estimate], [y, y + 0.18, y, y - 0.18], color=colour)
                    legend = f"{family}: {s.estimate:.2f} ({s.lower:.2f}-{s.upper:.2f})"
                    if np.isfinite(s.pi_lower):
                        ax.plot([s.pi_lower, s.pi_upper], [y, y], color=colour, lw=0.8, ls=":")
                        legend += f", PI {s.pi_lower:.2f}-{s.pi_upper:.2f}"
                    if np.isfinite(s.i2):
                        legend += f", I² {100 * s.i2:.0f} %"
            ax.plot([], [], "s", color=colour, label=legend)
        ax.axvline(reference, color="black", lw=0.8, ls="--")
        ax.set_yticks(list(range(len(clusters))) + [len(clusters) + 0.5])
        ax.set_yticklabels(clusters + ["pooled (RE)"], fontsize=7)
        ax.set_ylim(len(clusters) + 1.2, -0.8)
        ax.set(title=f"{label}" + ("" if pd.isna(h) else f", {int(h)} months"), xlabel=label)
        if METRIC_SCALE[metric] == "log":
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            low, high = ax.get_xlim()
            ax.set_xticks([t for t in (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 4.0) if low <= t <= high])
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.suptitle(f"{endpoint}: {label} per left-out cluster with 95 % CI; pooled random-effects estimate "
                 "(diamond), 95 % prediction interval (dotted)" + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    return save_figure(fig, path, dpi=100)


def _interval(metric: str, estimate: float, se: float) -> tuple[float, float]:
    from training.validation import METRIC_SCALE

    if not np.isfinite(se):
        return estimate, estimate
    scale = METRIC_SCALE[metric]
    if scale == "logit":
        logit, logit_se = np.log(estimate / (1 - estimate)), se / (estimate * (1 - estimate))
        return (float(1 / (1 + np.exp(-(logit - 1.96 * logit_se)))),
                float(1 / (1 + np.exp(-(logit + 1.96 * logit_se)))))
    if scale == "log":
        return float(estimate * np.exp(-1.96 * se)), float(estimate * np.exp(1.96 * se))
    return estimate - 1.96 * se, estimate + 1.96 * se
