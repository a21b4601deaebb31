"""The ingress's OpenAPI document (no Ray needed), and the stamp of the TypeScript client
generated from it.

    python -m deployments.ingress.openapi > clients/typescript/openapi.json
    python -m deployments.ingress.openapi --stamp clients/typescript

``make client`` runs both around the generator (openapi-typescript, tsc). The stamp
(``GENERATED.json``) holds the SHA-256 of the document and of every generated or compiled
file, so tests/unit/clients fails when the API changed without regenerating the client, or a
generated file was edited by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from deployments.ingress.app import openapi_schema

STAMP_FILE = "GENERATED.json"
# What the stamp covers, relative to the client's directory.
STAMPED_FILES = (
    "openapi.json",
    "src/schema.d.ts",
    "src/index.ts",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/schema.d.ts",
)


def render() -> str:
    """The document as committed: indented JSON, keys in the app's order, a final newline."""
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False) + "\n"


def file_digests(client_dir: Path) -> dict[str, str]:
    """SHA-256 of each stamped file of the client in `client_dir`.

    Raises:
        FileNotFoundError: A stamped file is missing (run ``make client``).
    """
    return {
        name: hashlib.sha256((client_dir / name).read_bytes()).hexdigest() for name in STAMPED_FILES
    }


def generator_versions(client_dir: Path) -> dict[str, str]:
    """The pinned devDependencies (openapi-typescript, typescript) of the client's package."""
    package = json.loads((client_dir / "package.json").read_text(encoding="utf-8"))
    return dict(sorted(package["devDependencies"].items()))


def write_stamp(client_dir: Path) -> Path:
    """Write ``GENERATED.json`` for the files now in `client_dir`."""
    stamp = {
        "regenerate": "make client",
        "generators": generator_versions(client_dir),
        "sha256": file_digests(client_dir),
    }
    path = client_dir / STAMP_FILE
    path.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: the document on stdout, or ``--stamp DIR`` to stamp a generated client."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stamp", type=Path, help="Write GENERATED.json in this client folder.")
    args = parser.parse_args(argv)
    if args.stamp is not None:
        print(write_stamp(args.stamp))
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
