"""The waterfall a clinician is shown: coloured by what a contribution means for the patient, with a legend that
says so, values as the page shows them, and every text readable (none overlapping another, none cut at the edge).

The explanations come from the served models through /explain; the chart is checked on its matplotlib Figure."""

import pytest
from fastapi.testclient import TestClient
from matplotlib.colors import to_hex
from matplotlib.text import Text

from serving.api import create_app
from serving.champions import ChampionRegistry
from serving.waterfall import BETTER, WORSE, waterfall_figure
from tests.sample_tasks import COMPETING, COMPETING_PATIENT, SINGLE, slug
from tests.serving.test_api import HEADERS, KEY, PATIENT

OUT_OF_RANGE = {**PATIENT, "treatment_years": 39.9, "response_years": 39.5, "age_years": 99.9}


@pytest.fixture(scope="module")
def client(served_models) -> TestClient:
    champions = ChampionRegistry(served_models.models_dir, [SINGLE, COMPETING])
    return TestClient(create_app(champions, {"local": KEY}))


def explanation(client: TestClient, task_slug: str, patient: dict, endpoint: str, months: int) -> dict:
    response = client.post(f"/v1/{task_slug}/explain", json={**patient, "explain": {"endpoint": endpoint,
                                                                                "horizon_months": months}},
                           headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def drawn_texts(figure) -> list[Text]:
    """Every non-empty visible text the PNG shows (tick labels only of ticks inside the axes' limits)."""
    hidden = set()
    for axes in figure.axes:
        for axis, (low, high) in ((axes.xaxis, sorted(axes.get_xlim())), (axes.yaxis, sorted(axes.get_ylim()))):
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return [text for text in figure.findobj(Text)
            if text.get_visible() and text.get_text().strip() and id(text) not in hidden]


def assert_readable(figure) -> None:
    renderer = figure.canvas.get_renderer()
    width, height = figure.bbox.width, figure.bbox.height
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in drawn_texts(figure)]
    for label, box in boxes:
        assert box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= width + 0.5 and box.y1 <= height + 0.5, \
            f"{label!r} lies outside the figure: {box}"
    for i, (label, box) in enumerate(boxes):
        for other, other_box in boxes[i + 1:]:
            overlap_x = min(box.x1, other_box.x1) - max(box.x0, other_box.x0)
            overlap_y = min(box.y1, other_box.y1) - max(box.y0, other_box.y0)
            assert overlap_x <= 0.5 or overlap_y <= 0.5, f"{label!r} overlaps {other!r}"


def bar_colours(figure) -> dict[str, set[str]]:
    """Colour of the bars by what the contribution does to the probability (raises, lowers, none, total)."""
    colours: dict[str, set[str]] = {}
    for patch in figure.axes[0].patches:
        if (patch.get_gid() or "").startswith("bar:"):
            colours.setdefault(patch.get_gid().split(":")[1], set()).add(to_hex(patch.get_facecolor()))
    return colours


def legend_texts(figure) -> list[str]:
    legends = [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend())]
    assert legends, "the chart has no legend"
    return [text.get_text() for legend in legends for text in legend.get_texts()]


@pytest.mark.parametrize(("task_slug", "patient", "endpoint", "months", "kind"), [
    (slug(SINGLE), PATIENT, "relapse", 24, "incidence"),
    (slug(SINGLE), PATIENT, "relapse_free", 24, "survival"),
    (slug(COMPETING), COMPETING_PATIENT, "event_free", 36, "survival"),
    (slug(COMPETING), COMPETING_PATIENT, "relapse", 12, "incidence"),
    (slug(SINGLE), OUT_OF_RANGE, "relapse_free", 12, "survival"),  # long warnings printed under the chart
])
def test_colours_legend_and_readable_text(client, task_slug, patient, endpoint, months, kind):
    explained = explanation(client, task_slug, patient, endpoint, months)
    assert explained["kind"] == kind
    figure = waterfall_figure(explained)
    good, bad = ("raises", "lowers") if kind == "survival" else ("lowers", "raises")
    colours = bar_colours(figure)
    assert colours.get(good, {to_hex(BETTER)}) == {to_hex(BETTER)}
    assert colours.get(bad, {to_hex(WORSE)}) == {to_hex(WORSE)}
    assert good in colours or bad in colours
    legend = legend_texts(figure)
    assert any(text.startswith("better for the patient") and good in text for text in legend)
    assert any(text.startswith("worse for the patient") and bad in text for text in legend)
    assert_readable(figure)
    shown = [text.get_text() for text in drawn_texts(figure)]
    assert not any("True" in text or "False" in text for text in shown)
    if explained["warnings"]:
        assert any(text.startswith("Read with caution") for text in shown)


def test_values_read_as_on_the_page(client):
    explained = explanation(client, slug(SINGLE), PATIENT, "relapse", 12)
    labels = {text.get_text() for text in waterfall_figure(explained).axes[0].get_yticklabels()}
    assert {"prior_therapy = no", "treatment_years = 7.4 years", "marker_level = not given", "age_years = 58 years",
            "average training patient", "this patient"} <= labels
    competing = explanation(client, slug(COMPETING), COMPETING_PATIENT, "event_free", 36)
    labels = [text.get_text() for text in waterfall_figure(competing).axes[0].get_yticklabels()]
    shown = competing["items"][:12]  # largest first, as the chart takes them
    for item in shown:
        if isinstance(item["value"], bool):
            assert f"{item['feature']} = {'yes' if item['value'] else 'no'}" in labels
        elif isinstance(item["value"], float) and item["units"]:
            assert any(label.startswith(f"{item['feature']} = ") and label.endswith(f" {item['units']}")
                       for label in labels)
    assert f"{len(competing['items']) - 12} other predictors" in labels
