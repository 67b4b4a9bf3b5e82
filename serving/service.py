"""The BentoML service: loads every task's champion from models/ once per worker and mounts the HTTP app.

Champions load in a worker (`__init__`), not at module level, because BentoML's arbiter imports this module too;
numba, which the compiled loops of the model package need, is imported there as well, and xgboost only for a
bundle saved before boosters were stored as JSON. BentoML answers GET `/livez`, `/healthz` and `/readyz` itself,
before the mounted app: `__is_ready__` makes its `/readyz` mean "every task that has a champion has it loaded".

Everything else goes to the app (`AppFirst`, serving/middleware.py): BentoML's router would answer `/` with its own
index page (with a Google Tag Manager snippet), and unknown paths and wrong methods in plain text without a request
id. BentoML's own request metrics are off (`metrics={"enabled": False}`): its instrument is the outermost
middleware and labels every request with the raw path, so each distinct URL a stranger sends would add series to
the worker's memory and to `/metrics` for good, and no middleware of ours runs early enough to bound that label.
`/metrics` is then the app's, with the service's bounded series (route template or `unmatched`), served as
METRICS_ACCESS says.

BentoML's OpenTelemetry middleware is the outermost too and built spans for every request (and for each message
of it) though no exporter sends them anywhere: a third of a one-patient request's Python calls. Every route is
excluded from tracing (`TRACE_NO_ROUTE`); a deployment that exports traces sets its own `exporter_type` and
`excluded_urls` under `services: relapse_risk: tracing:` in a BentoML configuration file (`BENTOML_CONFIG`), which
takes precedence (checked by hand: the spans come back).
"""

import os

import bentoml

from features.tasks import TASKS
from risk_model.process_memory import few_malloc_arenas
from serving.answers import REQUEST_TIMEOUT_SECONDS
from serving.api import create_app
from serving.audit import AuditTrail
from serving.auth import keys_file, parse_key_lines
from serving.champions import ChampionRegistry, one_blas_thread
from serving.middleware import AccessSettings, AppFirst

TRACE_NO_ROUTE = ".*"  # a regular expression every URL matches

champions = ChampionRegistry(os.environ.get("MODELS_DIR", "models"), list(TASKS))
api_keys: dict[str, str] = {}
key_roles: dict[str, frozenset[str]] = {}
audit = AuditTrail()  # paths from AUDIT_LOG_FILE and AUDIT_SECRET_FILE; opened in __init__
app = create_app(champions, api_keys, audit, key_roles, AccessSettings.from_env())


@bentoml.service(name="relapse_risk", workers=1, traffic={"timeout": REQUEST_TIMEOUT_SECONDS},
                 metrics={"enabled": False}, tracing={"excluded_urls": TRACE_NO_ROUTE})
@bentoml.asgi_app(app, path="/")
class RelapseRiskService:
    def __init__(self) -> None:
        one_blas_thread()
        few_malloc_arenas()
        for key_id, key, roles in parse_key_lines(keys_file().read_text()):
            api_keys[key_id], key_roles[key_id] = key, roles
        audit.prepare()
        champions.refresh(force=True)

    def __is_ready__(self) -> bool:
        return champions.ready()


RelapseRiskService.add_asgi_middleware(AppFirst, own_app=app)
