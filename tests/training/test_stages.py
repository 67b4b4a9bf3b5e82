"""The run's stage timer: seconds per named stage, and a watcher told of each stage's beginning and end even
when the stage fails (the training benchmark closes its row)."""

import pytest

from training.stages import Stages


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin(self, name: str) -> None:
        self.calls.append(f"begin {name}")

    def end(self) -> None:
        self.calls.append("end")


def test_each_stage_is_timed_and_a_repeated_name_adds_up():
    stages = Stages()
    for _ in range(2):
        with stages("fit"):
            sum(range(10_000))
    with stages("plots"):
        pass
    assert list(stages.seconds) == ["fit", "plots"]
    assert stages.seconds["fit"] > stages.seconds["plots"] >= 0


def test_the_watcher_sees_every_stage_end_even_a_failed_one():
    recorder = Recorder()
    stages = Stages(watcher=recorder)
    with stages("cohort"):
        pass
    with pytest.raises(ValueError), stages("tuning"):
        raise ValueError("a trial failed")
    assert recorder.calls == ["begin cohort", "end", "begin tuning", "end"]
    assert set(stages.seconds) == {"cohort", "tuning"}
