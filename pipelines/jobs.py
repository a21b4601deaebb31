"""What every job shares: progress lines, run names, output folders, reports and the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from storage.registry import state_dir

__all__ = ["job_dir", "new_run_name", "read_jsonl", "run_cli", "say", "write_json_report"]

RowT = TypeVar("RowT")


def say(message: str) -> None:
    """One progress line: plain and flushed, so ``nohup ... > log`` shows it live."""
    print(message, flush=True)


def new_run_name(prefix: str) -> str:
    """``<prefix>-<date>-<time>-<6 hex>``: fresh per run, since Ray Train resumes a known name."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def job_dir(configured: str | None, default_name: str) -> Path:
    """The configured folder (absolute: Ray workers may run elsewhere), else one in the state
    directory."""
    return Path(configured).resolve() if configured else state_dir() / default_name


def write_json_report(report_dir: Path, run_name: str, report: Mapping[str, object]) -> Path:
    """``<report_dir>/<run_name>.json`` (sorted keys, indented); returns its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{run_name}.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    return path


def read_jsonl(path: Path, parse: Callable[[Any], RowT], what: str, needs: str) -> Iterator[RowT]:
    """`parse` of each non-blank line's JSON value, in file order.

    Raises:
        ValueError: A line is not JSON or `parse` rejects it (KeyError, TypeError, ValueError);
            the message names the file, the line number, `what` it should be and what it
            `needs`. The line itself is never quoted: it may hold a raw user id or a post.
    """
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = parse(json.loads(line))
            except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
                raise ValueError(
                    f"{path.name} line {number} is not {what} ({type(exc).__name__}: {exc}); "
                    f"each line needs {needs}"
                ) from exc
            yield row


def run_cli(
    description: str,
    argv: list[str] | None,
    run: Callable[[str], Mapping[str, object]],
    user_errors: tuple[type[Exception], ...] = (ValueError,),
    indent: int | None = 2,
) -> int:
    """``--config <job YAML>``: run the job and print its summary as JSON; exit status 0.

    `user_errors` (config and data errors, whose messages name the file and the fix) print
    ``error: <message>`` without a traceback and exit with status 2.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="job YAML (configs/pipelines/*.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        summary = run(args.config)
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    say(json.dumps(summary, indent=indent, default=str))
    return 0
