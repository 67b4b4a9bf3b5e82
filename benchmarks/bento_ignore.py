"""`make bento` helper: write `<models>/.bentoignore` so that `bentoml build` packs only the current champions.

bentofile.yaml includes `models/*/champion.json` and `models/*/*/**`, which would take every exported version;
BentoML also honours `.bentoignore` files in sub-folders, so this lists each version folder that no
`champion.json` names. Usage: python -m benchmarks.bento_ignore [MODELS_DIR]   (default: models)
"""

import json
import sys
from pathlib import Path


def champion_folders(models_dir: Path) -> set[Path]:
    return {pointer.parent / str(json.loads(pointer.read_text())["path"])
            for pointer in sorted(models_dir.glob("*/champion.json"))}


def write_bentoignore(models_dir: Path) -> list[str]:
    """Write the file; returns the champion folders kept (relative to models_dir)."""
    keep = champion_folders(models_dir)
    others = sorted(folder for folder in models_dir.glob("*/*") if folder.is_dir() and folder not in keep)
    lines = ["# written by `make bento` (benchmarks/bento_ignore.py): only the current champions go into the Bento"]
    lines += [f"/{folder.relative_to(models_dir).as_posix()}/" for folder in others]
    (models_dir / ".bentoignore").write_text("\n".join(lines) + "\n")
    return sorted(folder.relative_to(models_dir).as_posix() for folder in keep)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    models_dir = Path(args[0] if args else "models")
    kept = write_bentoignore(models_dir)
    if not kept:
        print(f"no champion.json in {models_dir}/: run `make train` first", file=sys.stderr)
        return 1
    print(f"the Bento will hold the champions {', '.join(kept)} from {models_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
