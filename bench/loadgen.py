"""Run wrk against a loopback URL with ``post_bodies.lua`` and parse its JSON summary."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("post_bodies.lua")
WRK_JSON_MARKER = "WRK_JSON "
# Extra wall time allowed beyond the run's own duration before wrk is killed.
WRK_GRACE_S = 30.0


class LoadGenError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles and what went wrong."""

    connections: int
    threads: int
    duration_s: float
    requests: int
    ok_2xx: int
    degraded: int
    status_4xx: int
    status_5xx: int
    status_other: int
    socket_errors: int
    timeouts: int
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    wrk_cpu_s: float

    @property
    def ok_per_s(self) -> float:
        """Successful (2xx) responses per second, degraded ones included."""
        return self.ok_2xx / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def errors(self) -> int:
        """Non-2xx responses, socket errors (connect/read/write) and wrk timeouts.

        wrk counts a response slower than its timeout as a timeout (and leaves it out of the
        latency histogram) even if it later arrived with a 2xx status.
        """
        non_2xx = self.status_4xx + self.status_5xx + self.status_other
        return non_2xx + self.socket_errors + self.timeouts

    def as_dict(self) -> dict[str, object]:
        """Plain dict for the raw JSON results, with the derived figures."""
        return {**asdict(self), "ok_per_s": self.ok_per_s, "errors": self.errors}


def wrk_path() -> str:
    """Path of the wrk binary; raises LoadGenError with an install hint when missing."""
    found = shutil.which("wrk")
    if found is None:
        raise LoadGenError("wrk not found on PATH; install it (Debian/Ubuntu: apt-get install wrk)")
    return found


def run_wrk(
    base_url: str,
    route: str,
    bodies_file: Path,
    api_key: str,
    connections: int,
    duration_s: float,
    threads: int = 2,
    request_timeout_s: float = 10.0,
) -> WrkResult:
    """Drive `base_url` + `route` with `connections` keep-alive connections for `duration_s`.

    Raises:
        LoadGenError: wrk failed, ran past its deadline or printed no summary.
    """
    if not base_url.startswith(("http://127.0.0.1", "http://localhost")):
        raise LoadGenError(f"refusing to load-test {base_url}: loopback addresses only")
    threads = max(1, min(threads, connections))
    command = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(request_timeout_s))}s",
        "-s",
        str(LUA_SCRIPT),
        base_url,
        "--",
        str(bodies_file),
        api_key,
        route,
    ]
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration_s + request_timeout_s + WRK_GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadGenError(f"wrk did not finish within {exc.timeout:.0f} s") from exc
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_s = time.monotonic() - started
    summary = _parse_summary(completed.stdout)
    if completed.returncode != 0 or summary is None:
        raise LoadGenError(
            f"wrk exited with code {completed.returncode} after {wall_s:.1f} s; "
            f"stderr: {completed.stderr.strip()[-500:]!r}"
        )
    wrk_cpu_s = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    return WrkResult(
        connections=connections,
        threads=threads,
        duration_s=summary["duration_us"] / 1e6,
        requests=summary["requests"],
        ok_2xx=summary["status_2xx"],
        degraded=summary["degraded"],
        status_4xx=summary["status_4xx"],
        status_5xx=summary["status_5xx"],
        status_other=summary["status_other"],
        socket_errors=summary["errors_connect"] + summary["errors_read"] + summary["errors_write"],
        timeouts=summary["errors_timeout"],
        latency_p50_ms=summary["latency_p50_us"] / 1e3,
        latency_p90_ms=summary["latency_p90_us"] / 1e3,
        latency_p99_ms=summary["latency_p99_us"] / 1e3,
        latency_max_ms=summary["latency_max_us"] / 1e3,
        wrk_cpu_s=wrk_cpu_s,
    )


def _parse_summary(stdout: str) -> dict[str, int] | None:
    for line in stdout.splitlines():
        if line.startswith(WRK_JSON_MARKER):
            try:
                parsed = json.loads(line[len(WRK_JSON_MARKER) :])
            except json.JSONDecodeError:
                return None
            return {key: int(value) for key, value in parsed.items()}
    return None
