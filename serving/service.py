"""The BentoML service: loads every task's champion from models/ once per worker and mounts the HTTP app.

xgboost is imported only when a worker loads a bundle (in `__init__`), not at module level, because BentoML's
arbiter imports this module too.
"""

import os

import bentoml

from features.tasks import TASKS
from serving.api import create_app
from serving.auth import keys_file, read_keys
from serving.champions import ChampionRegistry

champions = ChampionRegistry(os.environ.get("MODELS_DIR", "models"), list(TASKS))
api_keys: dict[str, str] = {}
app = create_app(champions, api_keys)


@bentoml.service(name="relapse_risk", workers=1, traffic={"timeout": 30})
@bentoml.asgi_app(app, path="/")
class RelapseRiskService:
    def __init__(self) -> None:
        api_keys.update(read_keys(keys_file()))
        champions.refresh(force=True)
