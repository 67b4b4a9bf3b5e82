"""BentoML's tracing middleware skips every route (no exporter is configured, so its spans were pure cost), and a
deployment's own BentoML configuration file turns it back on. Each case in a fresh interpreter: the configuration
is process-wide."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROUTE = "http://127.0.0.1:3000/v1/any-task/predict"
CODE = f"""
from bentoml._internal.configuration.containers import BentoMLContainer
from serving.service import RelapseRiskService
RelapseRiskService.inject_config()
print(BentoMLContainer.tracing_excluded_urls.get().url_disabled({ROUTE!r}))
"""


def _route_untraced(extra_env: dict[str, str]) -> bool:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra_env}
    result = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_no_route_is_traced_by_default():
    assert _route_untraced({})


def test_a_deployment_configuration_traces_again(tmp_path):
    config = tmp_path / "bentoml.yaml"
    config.write_text("services:\n  relapse_risk:\n    tracing:\n      excluded_urls: /never-a-route\n")
    assert not _route_untraced({"BENTOML_CONFIG": str(config)})
