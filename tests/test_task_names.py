"""No task is tested outside its folder (issue 15): a test about one task's knowledge lives in tasks/<task>/tests/,
and a general test (API contract, hardening, pipeline mechanics) uses the test-only sample tasks
(tests/sample_tasks/). So no file under tests/ may name a task folder of tasks/: its name, its route (a-task) or
its request models' prefix (ATask). The names are read from the tasks folder, so a new task is covered at once."""

import re
from pathlib import Path

from tests.sample_tasks import SAMPLE_TASKS_DIR, sample_tasks

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
TASKS_DIR = REPO / "tasks"

def task_names() -> list[str]:
    return sorted(spec.parent.name for spec in TASKS_DIR.glob("*/task.toml"))


def name_pattern(names: list[str]) -> re.Pattern[str]:
    """A task's name, its route and its request models' prefix, not as part of a longer name (demo_task is not
    found in demo_task_death_cause)."""
    forms = {form for name in names
             for form in (name, name.replace("_", "-"), "".join(part.title() for part in name.split("_")))}
    alternatives = "|".join(sorted(map(re.escape, forms), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_-])(?:{alternatives})(?![a-z0-9_-])")


def files_naming_a_task() -> dict[str, list[str]]:
    pattern = name_pattern(task_names())
    found = {}
    for path in sorted(TESTS.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".png", ".parquet"):
            continue
        names = sorted(set(pattern.findall(path.read_text(encoding="utf-8", errors="replace"))))
        if names:
            found[path.relative_to(REPO).as_posix()] = names
    return found


def test_the_pattern_finds_each_form_of_a_name_and_nothing_longer():
    pattern = name_pattern(["demo_task", "other_demo"])
    assert pattern.findall('get_task("demo_task"), "/v1/demo-task/predict", schemas["DemoTaskPatient"]') == [
        "demo_task", "demo-task", "DemoTask"]
    assert pattern.findall("demo_task_death_cause, /v1/demo-task-death-cause, my_other_demo_copy") == []


def test_no_file_under_tests_names_a_task_folder():
    found = files_naming_a_task()
    assert not found, ("these files name a task: move the test into tasks/<task>/tests/ or use the sample tasks "
                       f"(tests/sample_tasks/): {found}")


def test_the_sample_tasks_are_not_tasks_of_the_project():
    names = set(sample_tasks())
    assert names and not names & set(task_names())
    assert {p.parent.name for p in SAMPLE_TASKS_DIR.glob("*/task.toml")} == names
