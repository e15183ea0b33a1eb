"""trainer.parallel: jobs side by side in spawned processes run after what they need, and a failure or a dead
process stops the run with one sentence."""
# Tier: unit, except the tests marked integration (jobs in spawned processes).
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edge.errors import ConfigError, EdgeError
from trainer.parallel import Job, run_jobs

_folder: Path | None = None     # set in each job process by _setup


def _setup(folder: str) -> None:
    global _folder
    _folder = Path(folder)


def _job(name: str, needs: tuple[str, ...], action: str = "") -> None:
    """Record that `name` ran and whether everything it needs had finished before it started."""
    ready = all((_folder / f"{n}.done").is_file() for n in needs)
    (_folder / f"{name}.started").write_text(str(ready))
    if action == "fail":
        raise ConfigError(f"{name} found a bad setting.")
    if action == "die":
        os._exit(3)
    if action.startswith("beside "):          # wait until the other job has started: they run side by side
        deadline = time.monotonic() + 60
        while not (_folder / f"{action[7:]}.started").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
    (_folder / f"{name}.done").write_text(str(os.getpid()))


def _jobs(spec: dict[str, tuple[tuple[str, ...], str]]) -> list[Job]:
    return [Job(name, (name, needs, action), needs) for name, (needs, action) in spec.items()]


@pytest.mark.integration
def test_each_job_runs_once_after_what_it_needs_in_two_processes(tmp_path):
    spec = {"a": ((), "beside b"), "b": ((), "beside a"), "c": (("a",), ""), "d": (("a", "b"), ""),
            "e": (("c", "d"), "")}
    lines = []
    run_jobs(_jobs(spec), _job, processes=2, setup=_setup, setup_args=(str(tmp_path),), log=lines.append,
             poll_s=0.2)
    assert {p.stem for p in tmp_path.glob("*.done")} == set(spec)
    assert all((tmp_path / f"{n}.started").read_text() == "True" for n in spec)
    assert (tmp_path / "a.done").read_text() != (tmp_path / "b.done").read_text()     # in two processes
    assert lines[-1].startswith("e done after") and lines[-1].endswith("(5/5 jobs)")


@pytest.mark.integration
def test_a_failing_job_raises_its_sentence_and_nothing_after_it_runs(tmp_path):
    spec = {"a": ((), "fail"), "b": (("a",), "")}
    with pytest.raises(ConfigError, match="^a found a bad setting.$"):
        run_jobs(_jobs(spec), _job, processes=2, setup=_setup, setup_args=(str(tmp_path),), log=print, poll_s=0.2)
    assert not (tmp_path / "b.started").exists()


@pytest.mark.integration
def test_a_process_that_dies_is_one_sentence(tmp_path):
    spec = {"a": ((), "die"), "b": (("a",), "")}
    with pytest.raises(EdgeError, match=r"^job process \d died \(exit code 3\) while a ran; run the same command"):
        run_jobs(_jobs(spec), _job, processes=1, setup=_setup, setup_args=(str(tmp_path),), log=print, poll_s=0.2)


def _failing_setup(folder: str) -> None:
    raise ConfigError(f"no such folder {folder}.")


@pytest.mark.integration
def test_a_failing_set_up_raises_its_sentence(tmp_path):
    with pytest.raises(ConfigError, match="^no such folder /nowhere.$"):
        run_jobs(_jobs({"a": ((), "")}), _job, processes=2, setup=_failing_setup, setup_args=("/nowhere",),
                 log=print, poll_s=0.2)


def test_a_job_needing_no_earlier_job_is_refused():
    with pytest.raises(ValueError, match="needs \\['b'\\]"):
        run_jobs([Job("a", needs=("b",)), Job("b")], _job, processes=1, setup=_setup)
