"""Serving runs on the model package alone: no training code, no tracking, tuning or training-only library.

The service is imported in a fresh interpreter (this one has imported training for other tests) and `sys.modules`
is read; the source of serving/ and risk_model/ is also read for imports inside functions, which a fresh import
does not reach until a request does.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("training", "mlflow", "optuna", "lifelines", "sksurv", "shap", "matplotlib")
# The PNG waterfall draws with matplotlib, imported on the first chart only (serving starts without it).
ALLOWED_LATE_IMPORTS = {("serving/waterfall.py", "matplotlib")}


def _forbidden_after_import(modules: list[str]) -> list[str]:
    code = (f"import importlib, json, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("modules", [["serving.service", "serving.api", "serving.champions", "serving.score"],
                                     ["risk_model.prediction", "risk_model.stop_timing", "risk_model.shapley"]])
def test_a_fresh_import_loads_no_training_module_or_library(modules):
    assert _forbidden_after_import(modules) == []


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_import_anywhere_in_serving_or_the_model_package_reaches_training():
    found = {(path.relative_to(REPO).as_posix(), root)
             for folder in ("serving", "risk_model") for path in sorted((REPO / folder).rglob("*.py"))
             for root in _imported_roots(path) if root in FORBIDDEN}
    assert found - ALLOWED_LATE_IMPORTS == set()


def test_a_boosted_champion_answers_without_xgboost(served_models):
    """A boosted champion's trees are read from its JSON model and walked in compiled loops: loading it and
    answering with contributions imports neither xgboost nor the scikit-learn xgboost would import (together
    about 80 MiB of every worker)."""
    boosted = [task for task, family in served_models.families.items() if family == "xgboost_cox"]
    assert boosted, "the served champions include a boosted one"
    code = ("import json, sys\nfrom pathlib import Path\nfrom serving.champions import ChampionRegistry\n"
            f"registry = ChampionRegistry(Path({str(served_models.models_dir)!r}), {boosted!r})\n"
            "registry.refresh()\n"
            f"loaded = [registry.get(task) for task in {boosted!r}]\n"
            "from risk_model.prediction import predict_patient\n"
            "for champion in loaded:\n"
            "    patient = {p['name']: p['example'] for p in champion.bundle.schema['predictors']}\n"
            "    assert predict_patient(champion.bundle, patient).contributions.items\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('xgboost', 'sklearn'))))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
