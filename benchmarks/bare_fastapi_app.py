"""The floor for `make bench`: one champion bundle behind a bare FastAPI app served by uvicorn.

Same prediction path as the service's `/v1/<slug>/predict` (the task's request model, `prepare_patients`, then
`predict_patients`), but no BentoML, no auth, no audit, no middleware and no response model: the typed answer
goes out serialised by pydantic, as the service sends it. `?contributions=false` leaves the contributions out
(the service's `/predict` always computes them).
Run: `python -m benchmarks.bare_fastapi_app --task cml_tfr --port 3001`.
"""

# No `from __future__ import annotations`: FastAPI must see the request model itself, not a string.
import argparse
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from features.tasks import get_task
from risk_model.bundle import ModelBundle
from risk_model.prediction import predict_patients
from risk_model.process_memory import few_malloc_arenas
from serving.api import prepare_patients
from serving.champions import one_blas_thread
from serving.request_models import patient_request_model


def load_champion(models_dir: Path, task: str) -> ModelBundle:
    pointer = json.loads((models_dir / task / "champion.json").read_text())
    return ModelBundle.load(models_dir / task / str(pointer["path"]))


def create_app(bundle: ModelBundle, task: str) -> FastAPI:
    schema = get_task(task).schema
    request_model = patient_request_model(schema)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/predict")
    async def predict(patient: request_model, contributions: bool = True) -> Any:  # type: ignore[valid-type]
        [(predictors, problems)] = prepare_patients(schema, [patient.model_dump(exclude={"explain"})])
        if problems:
            return JSONResponse({"code": "invalid_request", "fields": problems}, status_code=422)
        explain = patient.explain
        options = (explain.endpoint, explain.horizon_months) if explain else (None, None)
        [answer] = predict_patients(bundle, [predictors], explain=[options], with_contributions=contributions)
        return Response(answer.model_dump_json(), media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="cml_tfr")
    parser.add_argument("--models-dir", default=os.environ.get("MODELS_DIR", "models"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args(argv)
    one_blas_thread()  # as the service's worker does
    few_malloc_arenas()
    app = create_app(load_champion(Path(args.models_dir), args.task), args.task)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
