"""API keys: `key_id:key` or `key_id:key:roles` lines in the file named by API_KEYS_FILE (default
secrets/api_keys, mode 0600).

`roles` is a comma-separated list of what the key may do: `predict` (the `/v1/...` routes), `admin` (`/admin/...`,
and `/metrics` when it needs a key) and `metrics` (`/metrics` only, for a Prometheus server). A line without roles
means `predict`, so key files written before roles existed keep predicting, and only a key marked `admin` can
reload. Keys may not contain `:`.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

DEFAULT_KEYS_FILE = "secrets/api_keys"
ROLES = ("predict", "admin", "metrics")
DEFAULT_ROLES = frozenset({"predict"})
LOCAL_KEY_ROLES = ("predict", "admin")  # the key `make serve` creates: its operator can also reload


class KeyFileError(ValueError):
    """A key file line that cannot be read; the message names the line, never the key."""


def keys_file() -> Path:
    return Path(os.environ.get("API_KEYS_FILE", DEFAULT_KEYS_FILE))


def parse_key_lines(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """(key_id, key, roles) per line; blank lines and # comments ignored; an unknown role is an error (a typo
    must not silently take a right away or give one)."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key_id, key, *rest = (part.strip() for part in line.split(":", 2))
        roles = frozenset(r.strip() for r in rest[0].split(",") if r.strip()) if rest else DEFAULT_ROLES
        if not key_id or not key:
            raise KeyFileError(f"line {number}: a key id and a key are both needed (`key_id:key[:roles]`)")
        unknown = sorted(roles - set(ROLES))
        if unknown or not roles:
            raise KeyFileError(f"line {number} (key id {key_id!r}): roles must be among {', '.join(ROLES)}"
                               + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        entries.append((key_id, key, roles))
    return entries


def read_keys(path: Path) -> dict[str, str]:
    """key_id -> key."""
    return {key_id: key for key_id, key, _ in parse_key_lines(path.read_text())}


def read_roles(path: Path) -> dict[str, frozenset[str]]:
    """key_id -> the roles of that key."""
    return {key_id: roles for key_id, _, roles in parse_key_lines(path.read_text())}


def create_local_key(path: Path) -> str:
    """Write a file with one key `local` (roles predict and admin) readable only by its owner; returns the key."""
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"local:{key}:{','.join(LOCAL_KEY_ROLES)}\n")
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


def roles_of(key_id: str, roles: dict[str, frozenset[str]]) -> frozenset[str]:
    return roles.get(key_id, DEFAULT_ROLES)
