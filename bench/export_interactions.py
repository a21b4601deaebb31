"""Write the synthetic social network's interactions as the JSONL export the MF job reads.

    .venv/bin/python -m bench.export_interactions --out state/exports/interactions.jsonl \
        [--users 300 --posts 1200 --days 14 --seed 0]

The synthetic ids are not personal data, but the job hashes them anyway, as it does real ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.synthetic_social import generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--posts", type=int, default=1200)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    network = generate(n_users=args.users, n_posts=args.posts, days=args.days, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as lines:
        for event in network.interactions:
            lines.write(json.dumps(event) + "\n")
    print(f"{len(network.interactions)} interactions -> {out}")


if __name__ == "__main__":
    main()
