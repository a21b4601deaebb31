"""Ship a trained aspect-sentiment artifact inside the package.

    # after `python -m pipelines.finetune_aspects --config configs/pipelines/finetune_aspects.yaml`:
    python -m pipelines.ship_aspects --artifact <state_dir>/finetuned/<run> \\
        --report <state_dir>/reports/<run>.json
    # after editing MODEL_CARD.md by hand: re-write the checksums only
    python -m pipelines.ship_aspects --manifest-only

Copies the artifact's files (``aspect_config.json``, ``aspect_weights.pt``, ``metrics.json``)
into ``models/shipped/aspect-sentiment/``, writes ``figures.json`` from the job's report
(validation and held-out figures, the baselines; figures only, never text) and the
``MANIFEST`` of checksums `models.aspects.load_shipped_aspects` verifies. The model card
(``MODEL_CARD.md``) is written by hand from these figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.aspects import (
    ASPECT_CONFIG_FILENAME,
    ASPECT_METRICS_FILENAME,
    ASPECT_WEIGHTS_FILENAME,
    SHIPPED_ASPECTS_DIR,
)
from models.shipped import write_manifest

FIGURES_FILENAME = "figures.json"
_REPORT_KEYS = (
    "run_name",
    "best_step",
    "train_wall_s",
    "validation_metrics",
    "heldout_metrics",
    "baselines",
    "artifact_bytes",
    "data_files",
    "heldout_files",
)


def ship_aspects(
    artifact: Path | None, report: Path | None, target: Path = SHIPPED_ASPECTS_DIR
) -> dict[str, Any]:
    """Copy `artifact` and the figures of `report` into `target` (None: only the MANIFEST).

    Raises:
        FileNotFoundError: A file of the artifact or the report is missing.
    """
    target.mkdir(parents=True, exist_ok=True)
    if artifact is not None:
        for name in (ASPECT_CONFIG_FILENAME, ASPECT_WEIGHTS_FILENAME, ASPECT_METRICS_FILENAME):
            source = artifact / name
            if not source.is_file():
                raise FileNotFoundError(
                    f"{source} is missing; point --artifact at a finetune_aspects run directory"
                )
            shutil.copyfile(source, target / name)
    if report is not None:
        raw = json.loads(report.read_text(encoding="utf-8"))
        figures = {key: raw[key] for key in _REPORT_KEYS if key in raw}
        (target / FIGURES_FILENAME).write_text(
            json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    manifest = write_manifest(target)
    return {"directory": str(target), "manifest": manifest.read_text(encoding="utf-8")}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="a finetune_aspects run directory")
    parser.add_argument("--report", type=Path, help="that run's report JSON (figures.json)")
    parser.add_argument("--manifest-only", action="store_true", help="only re-write MANIFEST")
    args = parser.parse_args(argv)
    if args.artifact is None and not args.manifest_only:
        parser.error("--artifact is required (or --manifest-only)")
    try:
        result = ship_aspects(
            None if args.manifest_only else args.artifact,
            None if args.manifest_only else args.report,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
