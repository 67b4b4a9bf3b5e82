"""`make serve`: check there is a champion and an API key file, then start BentoML on loopback."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from features.tasks import TASKS
from serving.auth import LOCAL_KEY_ROLES, KeyFileError, create_local_key, keys_file, read_keys

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def champions_present(models_dir: Path) -> list[str]:
    return [task for task in TASKS if (models_dir / task / "champion.json").exists()]


def ensure_keys(path: Path, host: str) -> tuple[bool, str]:
    """(can serve, what to tell the user). On loopback a missing or empty key file is created with a key `local`.

    The message says where the key is and how to read it, never the key: standard output ends up in terminals'
    scroll-back, CI logs and `make serve > serve.log`."""
    try:
        if path.exists() and read_keys(path):
            return True, ""
    except KeyFileError as exc:
        return False, f"cannot read the API keys in {path}: {exc}"
    if host not in LOOPBACK:
        return False, (f"refusing to bind {host} without API keys: create {path} (one `key_id:key[:roles]` per "
                       "line, mode 0600) or set API_KEYS_FILE")
    create_local_key(path)
    return True, (f"created {path} (mode 0600) with key id 'local' (roles {', '.join(LOCAL_KEY_ROLES)}); read the "
                  f"key with: cut -d: -f2 {path}   and send it as: Authorization: Bearer <key>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    models_dir = Path(os.environ.get("MODELS_DIR", "models"))
    tasks = champions_present(models_dir)
    if not tasks:
        print(f"no trained model in {models_dir}/: run `make train` first", file=sys.stderr)
        return 1
    can_serve, message = ensure_keys(keys_file(), args.host)
    if not can_serve:
        print(message, file=sys.stderr)
        return 1
    if message:
        print(message)
    print(f"serving {', '.join(tasks)} on http://{args.host}:{args.port} (docs at /docs)", flush=True)
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:RelapseRiskService",
               "--host", args.host, "--port", str(args.port)]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
