"""The fuzzing of tests/serving/test_fuzz_e2e.py (what it sends and checks is described there). A module of its
own, imported by the test when it runs: hypothesis and schemathesis (~1 s of imports per process) stay out of
the fast tier, which collects every test file. Its asserts are rewritten like a test's (conftest.py)."""

import json
import time

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.sample_tasks import COMPETING_ROUTE, SINGLE_ROUTE

REQUEST_TIMEOUT_SECONDS = 20
# Examples per operation (half of what this test sent before, when it was the slow tier's longest test): every
# operation is still fuzzed in both modes on every run, with new cases each run (no example database, no fixed
# seed), so successive runs keep widening what is tried: about 1,500 cases a run, 1,905 before (printed at the end).
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 30}
# Valid competing-risk patients cost most (an endpoint per cause and their explanation), batches more than one and
# a valid reload loads every champion again: fewer of them in positive mode.
COSTLY = {("POST", f"{COMPETING_ROUTE}/predict"): 10, ("POST", f"{COMPETING_ROUTE}/predict-batch"): 6,
          ("POST", f"{SINGLE_ROUTE}/predict-batch"): 10, ("POST", "/admin/reload"): 5}
MUTATED_PATIENTS = 120  # drawn per patient route (hypothesis may stop short when it repeats itself)
MIN_MUTATED_PATIENTS = 100  # sent at least, per patient route (a count, not a speed)
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]
MALFORMED_BODIES = [b"", b"{", b"null", b"[]", b'"text"', b"1e999999", b'{"age_years": NaN}',
                    b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000, b'{"a": ' * 3000 + b"1" + b"}" * 3000,
                    b'{"patients": [' + b"{}," * 2000 + b"{}]}", b'{"explain": {"endpoint": null}}']
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)


def mutated(example: dict) -> st.SearchStrategy:
    """The example patient with some fields set to any JSON value, some dropped and maybe an unknown one added."""
    fields = sorted(example)
    return st.tuples(st.dictionaries(st.sampled_from(fields), JSON, max_size=3), st.sets(st.sampled_from(fields),
                     max_size=2), st.dictionaries(st.text(min_size=1, max_size=8), JSON, max_size=1)).map(
        lambda change: {**{k: v for k, v in example.items() if k not in change[1]}, **change[0], **change[2]})


def broken_only_where_replaced(case) -> bool:
    """A negative case that breaks only the Authorization header (this test always sends the key, replacing it)
    and the query (extra properties schemathesis may leave out when it serialises them): the request actually
    sent is valid, so being accepted is right. Unknown query parameters are refused (tests/serving/
    test_explain_route.py) whenever they reach the server."""
    meta = case.meta
    if meta is None:
        return False
    negative = {location for location, info in meta.components.items() if info.mode.is_negative}
    return ParameterLocation.HEADER in negative and negative <= {ParameterLocation.HEADER, ParameterLocation.QUERY}


def example_patient(schema, path: str) -> dict:
    """The patient example the OpenAPI document gives for a task's patient model."""
    components = schema.raw_schema["components"]["schemas"]
    name = "".join(part.title() for part in path.split("/")[2].split("-")) + "Patient"
    return components[name]["examples"][0]


def fuzz_the_real_server(live_server, capsys) -> None:
    """All three kinds of cases against `live_server` (tests/serving/conftest.py), asserting as they go."""
    schema = schemathesis.openapi.from_url(f"{live_server.base}/openapi.json")
    headers = {"Authorization": f"Bearer {live_server.key}"}
    session = requests.Session()
    started = time.monotonic()
    sent: dict[str, int] = {}
    statuses: dict[int, int] = {}

    def send(label: str, response: requests.Response) -> None:
        sent[label] = sent.get(label, 0) + 1
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    def fuzz(operation, mode, label, checks, examples):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(session=session, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
            send(label, response)
            case_checks = [c for c in checks if c is not negative_data_rejection] if broken_only_where_replaced(
                case) else checks
            case.validate_response(response, checks=case_checks, headers=headers)

        return run

    def mutate(path, example):
        patients = mutated(example)
        batch = path.endswith("predict-batch")
        bodies = st.fixed_dictionaries({"patients": st.lists(patients | JSON, max_size=4)}) | JSON if batch \
            else patients | JSON
        label = f"mutated POST {path}"

        @given(body=bodies)
        @settings(max_examples=MUTATED_PATIENTS, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(body):
            response = session.post(live_server.base + path, data=json.dumps(body), headers=headers,
                                    timeout=REQUEST_TIMEOUT_SECONDS)
            send(label, response)
            assert response.status_code in (200, 422), (response.status_code, response.text[:300])
            assert response.headers.get("x-request-id")
            answer = response.json()
            if response.status_code == 422:
                assert set(answer) == {"code", "message", "fields"}
            elif batch:
                assert answer["count"] == len(body["patients"]) == answer["succeeded"] + answer["failed"]
            else:
                assert {"task", "model", "endpoints", "risk_group", "contributions", "warnings"} <= set(answer)

        return run

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11, [op.label for op in operations]
    # A task without a trained champion (a task the test store does not train) answers with the documented 503
    # `no_model` in the error shape; its routes run the same validation code as the others and are left out.
    unserved = {op.path.rsplit("/", 1)[0] for op in operations if op.path.startswith("/v1/")
                and op.path.endswith("/model") and live_server.call(op.path)[0] == 503}
    for prefix in unserved:
        status, body, _ = live_server.call(f"{prefix}/model")
        assert status == 503 and body["code"] == "no_model" and set(body) == {"code", "message", "fields"}
    served = [op for op in operations if op.path.rsplit("/", 1)[0] not in unserved]

    for mode in (GenerationMode.NEGATIVE, GenerationMode.POSITIVE):  # 1. schemathesis
        for operation in served:
            method_path = (operation.method.upper(), operation.path)
            protected = operation.path.startswith(("/v1/", "/admin/"))
            if mode is GenerationMode.NEGATIVE and not protected:
                continue  # health routes take no input: nothing to break
            examples = COSTLY.get(method_path, EXAMPLES[mode]) if mode is GenerationMode.POSITIVE else EXAMPLES[mode]
            checks = [*CONFORMANCE]
            # A batch answers 200 with per-patient errors by design; elsewhere breaking the schema must be refused.
            if mode is GenerationMode.NEGATIVE and not operation.path.endswith("predict-batch"):
                checks.append(negative_data_rejection)
            try:
                fuzz(operation, mode, f"{mode.value} {' '.join(method_path)}", checks, examples)()
            except Unsatisfiable:  # no input to break
                assert mode is GenerationMode.NEGATIVE, method_path

    for operation in operations:  # 3. raw bytes no schema describes
        if operation.method.upper() != "POST":
            continue
        for body in MALFORMED_BODIES:
            response = session.post(live_server.base + operation.path, data=body, timeout=REQUEST_TIMEOUT_SECONDS,
                                    headers={**headers, "Content-Type": "application/json"})
            send(f"malformed POST {operation.path}", response)
            assert response.status_code < 500, (operation.path, body[:40], response.text[:300])
            if response.status_code >= 400:
                assert set(response.json()) == {"code", "message", "fields"}
            assert response.headers.get("x-request-id")

    patient_routes = [op.path for op in served if op.method.upper() == "POST" and op.path.startswith("/v1/")]
    for path in patient_routes:  # 2. mutated patients
        mutate(path, example_patient(schema, path))()

    total = sum(sent.values())
    elapsed = time.monotonic() - started
    with capsys.disabled():  # shown in every run, not only with -s
        print(f"\nfuzzing sent {total} cases to {len(operations)} operations of the real server in {elapsed:.0f} s; "
              f"statuses {dict(sorted(statuses.items()))}; tasks without a champion, left out: "
              f"{sorted(unserved) or 'none'}")
        for label, count in sorted(sent.items()):
            print(f"  {count:5d}  {label}")
    # Every patient route got its minimum of mutated cases.
    assert all(sent.get(f"mutated POST {path}", 0) >= MIN_MUTATED_PATIENTS for path in patient_routes), sent
    assert not [status for status in statuses if status >= 500]
