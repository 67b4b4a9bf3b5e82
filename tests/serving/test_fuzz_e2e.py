"""Property-based fuzzing of the real server from its own OpenAPI document (schemathesis on hypothesis).

Three kinds of cases, all over HTTP to the real server process:
1. schemathesis, per operation: schema-valid requests (positive mode) and schema-breaking ones (negative mode).
   Each response must not be a 5xx, must use a documented status, content type and headers, must match its
   documented schema (the error shape included), and a schema-breaking request must be refused (except in a
   batch, which answers each patient on its own by design).
2. hypothesis, per patient route: the documented example patient with fields replaced by any JSON value, dropped
   or added, or any JSON at all: 200 or 422 in the error shape.
3. raw bodies no schema describes (broken or deeply nested JSON, bytes that are not UTF-8).
A request slower than the timeout counts as a hang. The run is bounded by counts, not by time: a fixed number of
schemathesis examples per operation and of mutated patients per patient route. The count of cases sent is printed.
"""

import pytest


@pytest.mark.slow
def test_fuzz_the_real_server_from_its_openapi(live_server, capsys):
    from tests.serving.fuzzing import fuzz_the_real_server

    fuzz_the_real_server(live_server, capsys)
