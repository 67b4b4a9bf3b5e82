"""The audit trail: one JSON line per request, never a patient value.

Each line holds the time, the request id (also sent back as `X-Request-ID`), the route template, the key id
(never the key), the model that answered, the status, the latency and an HMAC-SHA256 digest of the input.
The digest's secret lives outside the audit file (`AUDIT_SECRET_FILE`, default `secrets/audit_secret`, created
with mode 0600 when missing), so someone holding only the audit file cannot test guesses of a patient's values;
an auditor with the secret can check whether a given request was made (`python -m serving.audit digest FILE`).
Each line goes to the file (`AUDIT_LOG_FILE`, default `logs/audit.jsonl`) in one `write()` on a descriptor
opened with `O_APPEND`, so lines from several workers never interleave.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_AUDIT_FILE = "logs/audit.jsonl"
DEFAULT_SECRET_FILE = "secrets/audit_secret"


def audit_file() -> Path:
    return Path(os.environ.get("AUDIT_LOG_FILE", DEFAULT_AUDIT_FILE))


def audit_secret_file() -> Path:
    return Path(os.environ.get("AUDIT_SECRET_FILE", DEFAULT_SECRET_FILE))


def load_or_create_secret(path: Path) -> bytes:
    """The secret in `path`; created (32 random bytes, hex, mode 0600) when missing, safely across workers."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(temporary, path)  # atomic, and fails if another worker got there first
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    secret = path.read_text().strip().encode()
    if not secret:
        raise ValueError(f"audit secret file {path} is empty")
    return secret


def canonical_input(body: bytes) -> bytes:
    """The bytes the digest covers: canonical JSON (sorted keys, no spaces) when the body parses, else the body.

    Canonical JSON makes the digest independent of key order and white space, so an auditor can recompute it
    from the patient record alone.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return body
    try:
        return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        return body


def input_digest(secret: bytes, body: bytes) -> str:
    return "hmac-sha256:" + hmac.new(secret, canonical_input(body), hashlib.sha256).hexdigest()


class AuditTrail:
    """Appends audit lines to a file; cheap to build (the service builds it at import), opened by `prepare`."""

    def __init__(self, path: str | Path | None = None, secret_path: str | Path | None = None):
        self.path = Path(path) if path is not None else audit_file()
        self.secret_path = Path(secret_path) if secret_path is not None else audit_secret_file()
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def prepare(self) -> AuditTrail:
        """Create the secret (if missing) and the audit folder; raises if either cannot be written."""
        with self._lock:
            if self._secret is None:
                self._secret = load_or_create_secret(self.secret_path)
                self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def digest(self, body: bytes) -> str:
        if self._secret is None:
            self.prepare()
        assert self._secret is not None
        return input_digest(self._secret, body)

    def record(self, entry: dict[str, Any]) -> None:
        """Append one line. `entry` must hold no patient value: only identifiers of requests, keys and models."""
        line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}
        data = (json.dumps(line, separators=(",", ":"), default=str) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recompute the audit digest of a request body (JSON file or -).")
    sub = parser.add_subparsers(dest="command", required=True)
    digest = sub.add_parser("digest", help="print the input digest an audit line would hold for this body")
    digest.add_argument("body", help="file with the request body (JSON), or - for standard input")
    args = parser.parse_args(argv)
    secret_path = audit_secret_file()
    if not secret_path.exists():
        print(f"no audit secret at {secret_path}: set AUDIT_SECRET_FILE to the service's secret", file=sys.stderr)
        return 1
    body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    print(input_digest(load_or_create_secret(secret_path), body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
