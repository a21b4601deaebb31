"""``serve run`` on a local Ray whose Prometheus metrics are on a fixed port.

    python -m deployments.serve_run --metrics-export-port 8080 serve_config.yaml

``serve run`` starts Ray itself with a random metrics export port; ``make serve``
(``deployments.launch``) runs this instead, which starts Ray first (``ray.init`` with the
port, in Serve's namespace, as ``serve run`` would) and then hands over to ``serve run``,
which keeps the Ray it finds. Everything after the port goes to ``serve run`` unchanged.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Start Ray with the metrics port, then run ``serve run`` with the remaining arguments."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics-export-port", type=int, required=True)
    args, serve_args = parser.parse_known_args(argv)

    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.scripts import cli

    ray.init(namespace=SERVE_NAMESPACE, _metrics_export_port=args.metrics_export_port)
    cli.main(args=["run", *serve_args], prog_name="serve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
