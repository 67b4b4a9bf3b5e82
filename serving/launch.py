"""`make serve`: check there is a champion and an API key file, then start BentoML on loopback."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from features.tasks import TASKS
from serving.auth import create_local_key, keys_file, read_keys

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def champions_present(models_dir: Path) -> list[str]:
    return [task for task in TASKS if (models_dir / task / "champion.json").exists()]


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
    path = keys_file()
    if not path.exists() or not read_keys(path):
        if args.host not in LOOPBACK:
            print(f"refusing to bind {args.host} without API keys: create {path} "
                  "(one `key_id:key` per line, mode 0600) or set API_KEYS_FILE", file=sys.stderr)
            return 1
        key = create_local_key(path)
        print(f"created {path} with key id 'local'; send it as: Authorization: Bearer {key}")
    print(f"serving {', '.join(tasks)} on http://{args.host}:{args.port} (docs at /docs)", flush=True)
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:RelapseRiskService",
               "--host", args.host, "--port", str(args.port)]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
