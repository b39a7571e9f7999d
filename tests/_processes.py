"""Process bookkeeping for the scale tests: what a cluster started, and that
it is gone after shutdown."""

import time

import psutil


def descendants():
    """This process's descendants, except resource trackers.

    multiprocessing's and loky's resource trackers are one helper per
    interpreter for all process pools (joblib, torch DataLoader workers, dask
    nannies...); they start on first use and exit with this process, by design.
    """
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" in " ".join(proc.cmdline()):
                continue
        except psutil.Error:
            continue
        found[proc.pid] = proc
    return found


def running(proc):
    """Whether ``proc`` still runs (a zombie has ended: where PID 1 does not
    reap orphans, as in containers, it stays listed)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_processes_end(procs, timeout=60):
    """Wait up to ``timeout`` s for ``procs`` to end; fail naming any left."""
    procs = list(procs)
    assert procs, "expected the cluster to have started processes"
    deadline = time.monotonic() + timeout
    while any(running(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = []
    for proc in procs:
        if running(proc):
            try:
                alive.append((proc.pid, " ".join(proc.cmdline())[:120]))
            except psutil.Error:
                continue
    assert not alive, f"processes left running: {alive}"
