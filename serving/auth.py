"""API keys: `key_id:key` lines in the file named by API_KEYS_FILE (default secrets/api_keys, mode 0600)."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

DEFAULT_KEYS_FILE = "secrets/api_keys"


def keys_file() -> Path:
    return Path(os.environ.get("API_KEYS_FILE", DEFAULT_KEYS_FILE))


def read_keys(path: Path) -> dict[str, str]:
    """key_id -> key; blank lines and # comments ignored."""
    keys = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key_id, key = line.split(":", 1)
            keys[key_id.strip()] = key.strip()
    return keys


def create_local_key(path: Path) -> str:
    """Write a file with one key `local` readable only by its owner; returns the key."""
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"local:{key}\n")
    return key


def key_id_for(authorization: str | None, keys: dict[str, str]) -> str | None:
    """The key id whose key matches the bearer token (constant-time comparison), else None."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    presented = authorization.removeprefix("Bearer ").strip().encode()
    match = None
    for key_id, key in keys.items():
        if hmac.compare_digest(presented, key.encode()):
            match = key_id
    return match
