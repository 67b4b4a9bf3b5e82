"""The embedded MLflow store (SQLite `mlruns/mlflow.db`, artifacts under `mlruns/artifacts/`) belongs to its
working folder: a copied or moved folder must read and write its own artifacts, never the original's.

MLflow records every artifact location as an absolute path when it creates it (experiments, runs, logged models,
model versions; `resolve_uri_if_local` turns a relative location into an absolute one, so there is no
store-relative form to ask for). So before each training run, each promotion or rollback, and `make ui`, the store
is checked: when the experiments' artifact locations lie in another folder with this store's layout
(`<other>/artifacts/<experiment>`), every location recorded under that folder is rewritten to this one. When this
folder lacks the artifacts those locations name (only the database was copied), nothing is rewritten and the run
is refused with what to copy. A tracking server (`http://...`) manages its own locations and is left alone.

`python -m training.mlflow_store` runs the check alone (`make ui` does, first).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ARTIFACTS = "artifacts"


class StoreLocationError(RuntimeError):
    """The store's artifacts live in another folder and this one has no copy of them."""


def store_database(tracking_uri: str) -> Path | None:
    """The SQLite file of an embedded store (resolved from the current folder), or None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve()


def _local_path(location: str | None) -> Path | None:
    if not location:
        return None
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def _foreign_roots(connection: sqlite3.Connection, store: Path) -> dict[Path, list[tuple[str, int]]]:
    """Other store folders the experiments' locations point into: folder -> [(experiment name, runs)]."""
    roots: dict[Path, list[tuple[str, int]]] = {}
    rows = connection.execute("SELECT e.name, e.artifact_location, (SELECT COUNT(*) FROM runs r WHERE "
                              "r.experiment_id = e.experiment_id) FROM experiments e").fetchall()
    for name, location, runs in rows:
        path = _local_path(location)
        if path is None or path.name != name or path.parent.name != ARTIFACTS:
            continue  # not laid out by this project (e.g. MLflow's Default experiment): follows the rewrite below
        root = path.parent.parent
        if root != store:
            roots.setdefault(root, []).append((name, runs))
    return roots


def _text_columns(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [(table, column[1]) for table in tables
            for column in connection.execute(f'PRAGMA table_info("{table}")')
            if any(word in (column[2] or "").upper() for word in ("CHAR", "TEXT", "CLOB"))]


def _rewrite(connection: sqlite3.Connection, old: Path, new: Path) -> int:
    """Every recorded value that starts with the old folder (as a path or a file URI) now starts with the new."""
    changed = 0
    pairs = [(old.as_uri(), new.as_uri()), (str(old), str(new))]
    for table, column in _text_columns(connection):
        for before, after in pairs:
            # Only the folder itself or what lies inside it: /a/mlruns must not match /a/mlruns2.
            cursor = connection.execute(
                f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                f'WHERE "{column}" = ? OR substr("{column}", 1, ?) = ?',
                (after, len(before) + 1, before, len(before) + 1, before + "/"))
            changed += cursor.rowcount
    return changed


def relocate_store(tracking_uri: str | None = None) -> list[str]:
    """Point a copied or moved embedded store at its own folder; returns what was rewritten (empty: nothing to do).

    Raises StoreLocationError when the artifacts of an experiment with runs are not in this folder."""
    if tracking_uri is None:
        import mlflow

        tracking_uri = mlflow.get_tracking_uri()  # what an MlflowClient() without a URI would use
    database = store_database(tracking_uri)
    if database is None or not database.exists():
        return []
    store = database.parent
    connection = sqlite3.connect(database)
    try:
        with connection:  # one transaction: every location is rewritten, or none
            return _relocate(connection, database, store)
    finally:
        connection.close()


def _relocate(connection: sqlite3.Connection, database: Path, store: Path) -> list[str]:
    if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone():
        return []
    roots = _foreign_roots(connection, store)
    for old, experiments in roots.items():
        missing = [name for name, runs in experiments if runs and not (store / ARTIFACTS / name).is_dir()]
        if missing:
            raise StoreLocationError(
                f"the MLflow store {database} was made in {old}: its runs' artifacts are recorded under "
                f"{old / ARTIFACTS}, and this folder has no {store / ARTIFACTS / missing[0]}. Copy or move the "
                f"whole {store.name}/ folder (mlflow.db together with {ARTIFACTS}/), or start from an empty "
                f"{store.name}/; nothing was changed")
    notes = []
    for old in roots:
        count = _rewrite(connection, old, store)
        notes.append(f"MLflow store moved from {old} to {store}: {count} recorded artifact location(s) now "
                     "point into this folder")
    return notes


def main() -> int:
    try:
        for note in relocate_store():
            print(note)
    except StoreLocationError as error:
        print(f"MLflow store: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
