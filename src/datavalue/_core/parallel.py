"""Parallel execution and seeding, through joblib only.

Work is split into independent tasks, each with its own seed drawn from one
``numpy.random.SeedSequence``; results come back in task order. So the same ``random_state``
gives the same values for ``n_jobs=1``, ``n_jobs=2`` or a Ray cluster (joblib's ``"ray"``
backend): parallelism changes where a task runs, never what it computes.

The user's ``joblib.parallel_config(...)`` context (backend, n_jobs) is honoured; we pass
``n_jobs`` only when it is given explicitly.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from joblib import Parallel, delayed, parallel_config

__all__ = ["spawn_seeds", "parallel_map", "progress_bar", "effective_n_jobs", "joblib_backend",
           "watched"]

T = TypeVar("T")


def spawn_seeds(random_state: int | None, n: int) -> list[int]:
    """``n`` independent 32-bit integer seeds derived from ``random_state``.

    Uses ``SeedSequence(random_state).spawn(n)``, so seed ``k`` depends only on
    ``(random_state, k)``: task ``k`` gets the same stream however tasks are scheduled.
    """
    from datavalue._core.validation import check_seed

    children = np.random.SeedSequence(check_seed(random_state)).spawn(n)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


_watchdog_started = False
_watchdog_lock = threading.Lock()


def _watch_parent(parent: int) -> None:
    """In a worker process: exit as soon as ``parent`` (the process that dispatched the work) is
    gone. joblib's loky workers otherwise outlive a parent killed with SIGKILL by their idle
    timeout (300 s), holding their memory."""
    global _watchdog_started
    with _watchdog_lock:
        if _watchdog_started:
            return
        _watchdog_started = True

    def watch() -> None:
        import time

        while True:
            if os.getppid() != parent:  # re-parented: the dispatcher died
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="datavalue-parent-watch", daemon=True).start()


class watched:  # noqa: N801 - used like a function wrapper: delayed(watched(fn))(...)
    """``fn`` for a joblib task that, when it runs in a child process of this one, makes that
    worker exit once this process dies (see :func:`_watch_parent`). In this process (sequential
    or thread backends) it is ``fn`` itself; on a Ray cluster (other parents) it does nothing."""

    def __init__(self, fn: Callable[..., T]) -> None:
        self.fn = fn
        self.parent = os.getpid()
        self.__name__ = getattr(fn, "__name__", "task")

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        if os.getpid() != self.parent and os.getppid() == self.parent:
            _watch_parent(self.parent)
        return self.fn(*args, **kwargs)


def effective_n_jobs(n_jobs: int | None) -> int:
    from joblib import effective_n_jobs as _eff

    return int(_eff(n_jobs))


def progress_bar(total: int | None, desc: str, progress: bool | None = None, unit: str = "it"):
    """A tqdm bar on stderr. ``progress=None`` shows it only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=None if progress is None else not progress,
                unit=unit, leave=False, dynamic_ncols=True)


def parallel_map(
    fn: Callable[..., T],
    tasks: Sequence[Any] | Iterable[Any],
    *,
    n_jobs: int | None = None,
    progress: bool | None = None,
    desc: str = "",
    total: int | None = None,
    unit: str = "task",
    backend: str | None = None,
    prefer: str | None = None,
) -> list[T]:
    """``[fn(t) for t in tasks]`` with joblib, in task order, with a progress bar.

    A task that is a tuple is unpacked into positional arguments. ``prefer="threads"`` suits
    work that releases the GIL (numpy sorting and BLAS, tree fitting): no worker processes to
    start and no data to copy; a backend set with ``joblib.parallel_config`` still wins.
    """
    tasks = list(tasks)
    total = len(tasks) if total is None else total
    task = watched(fn)
    calls = (delayed(task)(*t) if isinstance(t, tuple) else delayed(task)(t) for t in tasks)
    kwargs: dict[str, Any] = {"return_as": "generator"}
    if n_jobs is not None:
        kwargs["n_jobs"] = n_jobs
    if backend is not None:
        kwargs["backend"] = backend
    if prefer is not None:
        kwargs["prefer"] = prefer
    out: list[T] = []
    with progress_bar(total, desc, progress, unit) as bar:
        try:
            results = Parallel(**kwargs)(calls)
        except ValueError as exc:
            if "return_as" not in str(exc):
                raise
            # Ray's joblib backend returns lists only: the bar then moves at the end.
            calls = (delayed(task)(*t) if isinstance(t, tuple) else delayed(task)(t)
                     for t in tasks)
            results = Parallel(**{**kwargs, "return_as": "list"})(calls)
        for r in results:
            out.append(r)
            bar.update(1)
    return out


@contextlib.contextmanager
def joblib_backend(backend: str | None, ray_address: str | None = None) -> Iterator[None]:
    """Run the enclosed joblib calls on ``backend`` (None: joblib's default or the user's
    ``parallel_config``).

    ``"ray"`` uses Ray's joblib backend (the ``ray`` extra): it connects to the cluster at
    ``ray_address`` (e.g. ``"127.0.0.1:6379"`` for a cluster started with ``ray start --head``;
    None starts or joins a local one) unless Ray is already initialised in this process.
    """
    if backend is None:
        yield
        return
    if backend != "ray":
        with parallel_config(backend=backend):
            yield
        return
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from datavalue._core.exceptions import InvalidParameterError

        raise InvalidParameterError(
            "backend='ray' needs Ray: pip install 'datavalue[ray]'."
        ) from exc
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    register_ray()
    with parallel_config(backend="ray"):
        yield
