"""Resident memory and CPU of a server's process tree, and killing what is left of it.

psutil comes with Ray (vendored under ``ray/thirdparty_files``; importing ``ray`` puts it on
``sys.path``), so nothing extra is installed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import ray  # noqa: F401  (puts Ray's vendored psutil on sys.path)

import psutil  # isort: skip

MB = 1024 * 1024


def _label(process: psutil.Process) -> str:
    """Short, stable name: ``ray::ServeReplica:app:Ingress``, ``raylet``, ``dashboard.py``."""
    try:
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    if cmdline and cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0]
    for arg in cmdline[1:4]:
        if arg.endswith(".py"):
            return os.path.basename(arg)
        if arg == "-m" or arg.startswith("bench.") or arg.startswith("ray."):
            continue
    return os.path.basename(cmdline[0]) if cmdline else process.name()


@dataclass
class ProcessTree:
    """Every process seen under one root pid (kept even after it is re-parented)."""

    root_pid: int
    seen: dict[int, tuple[float, str]] = field(default_factory=dict)

    def refresh(self) -> list[psutil.Process]:
        """Return the live processes of the tree and remember them for `kill_leftovers`."""
        try:
            root = psutil.Process(self.root_pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        live = []
        for process in processes:
            try:
                # Relabelled on every refresh: Ray workers set their title after start-up.
                self.seen[process.pid] = (process.create_time(), _label(process))
                live.append(process)
            except psutil.NoSuchProcess:
                continue
        # Processes re-parented away from the root (e.g. Ray workers) stay tracked.
        for pid, (created, _label_text) in self.seen.items():
            if all(p.pid != pid for p in live):
                process = _same_process(pid, created)
                if process is not None:
                    live.append(process)
        return live

    def cpu_times_s(self) -> dict[int, float]:
        """user+system CPU seconds per live pid."""
        times: dict[int, float] = {}
        for process in self.refresh():
            try:
                cpu = process.cpu_times()
                times[process.pid] = cpu.user + cpu.system
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return times

    def cores_by_label(
        self, before: dict[int, float], after: dict[int, float], wall_s: float
    ) -> dict[str, float]:
        """Cores used per process label between two `cpu_times_s` snapshots."""
        cores: dict[str, float] = {}
        for pid, end_s in after.items():
            label = self.seen.get(pid, (0.0, "?"))[1]
            used_s = end_s - before.get(pid, 0.0)
            cores[label] = cores.get(label, 0.0) + used_s / wall_s
        return dict(sorted(cores.items(), key=lambda item: -item[1]))

    def memory(self) -> dict[str, float]:
        """Sum of RSS and of PSS (shared pages split between processes) in MB, and a count."""
        rss_bytes = pss_bytes = 0
        count = 0
        for process in self.refresh():
            try:
                rss_bytes += process.memory_info().rss
                try:
                    pss_bytes += getattr(process.memory_full_info(), "pss", 0)
                except psutil.AccessDenied:
                    pass
                count += 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return {"rss_mb": rss_bytes / MB, "pss_mb": pss_bytes / MB, "processes": count}

    def kill_leftovers(self, wait_s: float = 10.0) -> list[str]:
        """Wait up to `wait_s` for tracked processes to exit, then SIGKILL the rest by pid.

        Only pids this tree has seen, with the same creation time, are touched (no reuse).
        Returns the labels of the processes that had to be killed.
        """
        self.refresh()
        deadline = time.monotonic() + wait_s
        survivors = self._survivors()
        while survivors and time.monotonic() < deadline:
            time.sleep(0.5)
            survivors = self._survivors()
        killed = []
        for process in survivors:
            try:
                process.kill()
                killed.append(self.seen[process.pid][1])
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(survivors, timeout=5.0)
        return killed

    def _survivors(self) -> list[psutil.Process]:
        alive = []
        for pid, (created, _label_text) in self.seen.items():
            process = _same_process(pid, created)
            try:
                if process is not None and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.NoSuchProcess:
                continue
        return alive


def _same_process(pid: int, created: float) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        return process if abs(process.create_time() - created) < 0.01 else None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def machine_busy_s() -> float:
    """CPU seconds spent by the whole machine (all processes, all cores) since boot."""
    times = psutil.cpu_times()
    # guest time is already part of user time on Linux.
    not_busy = ("idle", "iowait", "guest", "guest_nice")
    return float(sum(getattr(times, name) for name in times._fields if name not in not_busy))
