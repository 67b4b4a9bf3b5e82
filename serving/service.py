"""The BentoML service: loads every task's champion from models/ once per worker and mounts the HTTP app.

xgboost is imported only when a worker loads a bundle (in `__init__`), not at module level, because BentoML's
arbiter imports this module too. BentoML answers `/livez`, `/healthz`, `/readyz` and `/metrics` itself, before
the mounted app: `__is_ready__` makes its `/readyz` mean "every task that has a champion has it loaded", and the
app's metrics (created in the worker, after BentoML has set up Prometheus' multiprocess mode) appear in its
`/metrics`.
BentoML also routes `/` to its own index page (with a Google Tag Manager snippet); the `PageFirst` middleware sends
`/` and the page's assets to the app before BentoML's router sees them (serving/page.py).
"""

import os

import bentoml

from features.tasks import TASKS
from serving.api import create_app
from serving.audit import AuditTrail
from serving.auth import keys_file, read_keys
from serving.champions import ChampionRegistry
from serving.page import PageFirst

champions = ChampionRegistry(os.environ.get("MODELS_DIR", "models"), list(TASKS))
api_keys: dict[str, str] = {}
audit = AuditTrail()  # paths from AUDIT_LOG_FILE and AUDIT_SECRET_FILE; opened in __init__
app = create_app(champions, api_keys, audit)


@bentoml.service(name="relapse_risk", workers=1, traffic={"timeout": 30})
@bentoml.asgi_app(app, path="/")
class RelapseRiskService:
    def __init__(self) -> None:
        api_keys.update(read_keys(keys_file()))
        audit.prepare()
        champions.refresh(force=True)

    def __is_ready__(self) -> bool:
        return champions.ready()


# BentoML's router would answer `/` with its own index page; this middleware wraps that router, so `/` is ours.
RelapseRiskService.add_asgi_middleware(PageFirst, page_app=app)
