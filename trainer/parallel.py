"""Independent trainings side by side in N local processes (`python -m trainer benchmark --jobs N`).

On a CPU one training gains little from a second thread (small convolutions, batch 32), but two trainings in two
one-thread processes take about half the wall time. A job is a picklable call plus the names of the jobs it needs
finished first; each process is spawned once (a fresh interpreter: no forked OpenMP or torch state), set up once
(e.g. loading the dataset into memory), then takes the first ready job in list order whenever it is free. Jobs pass
nothing back: they write their results (checkpoints) where the caller reads them afterwards.
"""
from __future__ import annotations

import copy
import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from edge.errors import EdgeError


@dataclass(frozen=True)
class Job:
    """`call(*args)` in a job process, once every job named in `needs` has finished."""

    name: str
    args: tuple = ()
    needs: tuple[str, ...] = ()


def _portable(what: str, exc: BaseException) -> BaseException:
    """What the parent re-raises: a bad-input error as it is (one sentence), anything else with its traceback."""
    if isinstance(exc, EdgeError):
        try:
            copy.deepcopy(exc)          # rebuilt as unpickling rebuilds it (its reduce), without loading a pickle
            return exc
        except Exception:  # noqa: BLE001 - an error that cannot be rebuilt is reported as text below
            pass
    return RuntimeError(f"{what} failed in its job process:\n{traceback.format_exc()}")


def _exit_with_parent() -> None:
    """A job process ends when the parent does, however it ended (SIGKILL included): it never trains on into an
    --out that the same command, run again, is resuming."""
    mp.parent_process().join()
    os._exit(1)


def _serve(setup: Callable[..., None], setup_args: tuple, call: Callable[..., None], tasks, results) -> None:
    """A job process: set up once, then run jobs until the None that says there are no more."""
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        setup(*setup_args)
    except BaseException as exc:  # noqa: BLE001 - the parent reports it and stops
        results.put((None, _portable("the set-up", exc)))
        return
    while (task := tasks.get()) is not None:
        name, args = task
        try:
            call(*args)
            results.put((name, None))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            results.put((name, _portable(f"job {name!r}", exc)))


def _check_order(jobs: list[Job]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise ValueError(f"two jobs are named {job.name!r}.")
        if missing := [n for n in job.needs if n not in seen]:
            raise ValueError(f"job {job.name!r} needs {missing}: a job must come after every job it needs.")
        seen.add(job.name)


def run_jobs(jobs: list[Job], call: Callable[..., None], *, processes: int, setup: Callable[..., None],
             setup_args: tuple = (), log: Callable[[str], Any] = print, poll_s: float = 2.0) -> None:
    """Run `jobs` (each after the earlier ones it needs) in `processes` spawned processes. The first failure
    stops every process and is raised here; so is a process that dies (killed, out of memory)."""
    _check_order(jobs)
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    workers = [ctx.Process(target=_serve, args=(setup, setup_args, call, tasks, results), name=f"job process {i}")
               for i in range(min(processes, len(jobs)))]
    pending, running, done, start = list(jobs), set(), set(), time.time()
    for worker in workers:
        worker.start()
    try:
        while pending or running:
            while len(running) < len(workers) and (
                    job := next((j for j in pending if set(j.needs) <= done), None)) is not None:
                pending.remove(job)
                running.add(job.name)
                tasks.put((job.name, job.args))
            try:
                name, error = results.get(timeout=poll_s)
            except queue.Empty:
                if dead := [w for w in workers if w.exitcode is not None]:
                    code = dead[0].exitcode
                    how = f"was killed by signal {-code}" if code < 0 else f"died (exit code {code})"
                    raise EdgeError(f"{dead[0].name} {how} while {', '.join(sorted(running))} ran; run the same "
                                    "command again to resume.") from None
                continue
            if error is not None:
                raise error
            running.remove(name)
            done.add(name)
            log(f"{name} done after {time.time() - start:.0f} s ({len(done)}/{len(jobs)} jobs)")
        for _ in workers:
            tasks.put(None)
        for worker in workers:
            worker.join()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
