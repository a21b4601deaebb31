"""A MovieLens-layout ratings file with real collaborative structure, for exercising
`bench.eval_feed --ratings` where no real ratings file is at hand. SYNTHETIC: figures measured
on it say nothing about real people; they check that the protocol runs and that the rankers
separate as they should on data with taste structure.

    .venv/bin/python -m bench.synthetic_ratings /tmp/ratings.tsv [--users 943 --items 1682]

Output: one ``user<TAB>item<TAB>rating<TAB>timestamp`` line per rating (MovieLens 100k's
``u.data`` layout). How it is drawn:

- users and items get latent taste vectors (``--factors`` dimensions, standard normal);
- items get a popularity bias from a log-normal (a long tail: a few items are rated by many);
- each user rates a log-normal number of items (at least ``--min-per-user``), chosen without
  replacement with probability ``softmax(selectivity * affinity + bias)``: people watch what
  they expect to like, and what is popular;
- ratings are ``3 + spread * affinity + noise``, rounded and clipped to 1..5;
- timestamps: each user is active over their own span within ``--days``, and their choices
  drift: the items drawn late in the span lean towards a second taste vector (a user's taste
  mixes from the first to the second), so the held-out last ratings are not the first ones
  again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

START_S = 874_724_710  # 1997-09-20, where MovieLens 100k begins


def generate_ratings(
    n_users: int = 943,
    n_items: int = 1682,
    factors: int = 8,
    mean_per_user: float = 80.0,
    min_per_user: int = 20,
    days: float = 215.0,
    selectivity: float = 1.5,
    spread: float = 1.0,
    drift: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Rows ``(user, item, rating, timestamp)`` as an int64 array, ordered by user then time."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, factors))
    later = users * (1 - drift) + drift * rng.standard_normal((n_users, factors))
    items = rng.standard_normal((n_items, factors))
    bias = rng.lognormal(0.0, 1.0, n_items)
    bias = np.log(bias / bias.mean())
    counts = np.clip(
        rng.lognormal(np.log(mean_per_user) - 0.5, 1.0, n_users), min_per_user, n_items // 2
    ).astype(int)
    rows: list[np.ndarray] = []
    scale = 1.0 / np.sqrt(factors)
    for user in range(n_users):
        count = int(counts[user])
        # Half the choices from the early taste, half from the later one, in time order.
        early, late = count - count // 2, count // 2
        chosen: list[int] = []
        taken = np.zeros(n_items, dtype=bool)
        for taste, how_many in ((users[user], early), (later[user], late)):
            logits = selectivity * (items @ taste) * scale + bias
            logits[taken] = -np.inf
            p = np.exp(logits - logits[~taken].max())
            p /= p.sum()
            picked = rng.choice(n_items, size=how_many, replace=False, p=p)
            taken[picked] = True
            chosen.extend(int(i) for i in picked)
        tastes = np.vstack([np.repeat([users[user]], early, 0), np.repeat([later[user]], late, 0)])
        affinity = np.einsum("ij,ij->i", items[chosen], tastes) * scale
        ratings = np.clip(
            np.rint(3.0 + spread * affinity + rng.normal(0, 0.8, count)), 1, 5
        ).astype(int)
        begin = START_S + rng.random() * days * 86_400 * 0.7
        span = rng.random() * days * 86_400 * 0.3 + 3_600
        times = np.sort(begin + rng.random(count) * span).astype(np.int64)
        rows.append(
            np.column_stack([np.full(count, user + 1), np.array(chosen) + 1, ratings, times])
        )
    return np.vstack(rows).astype(np.int64)


def write_ratings(path: Path, rows: np.ndarray, delimiter: str = "\t") -> None:
    """Write rows in the MovieLens ``user item rating timestamp`` layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for user, item, rating, timestamp in rows.tolist():
            out.write(f"{user}{delimiter}{item}{delimiter}{rating}{delimiter}{timestamp}\n")


def main(argv: list[str] | None = None) -> None:
    """Write the file and say how many ratings it holds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--factors", type=int, default=8)
    parser.add_argument("--mean-per-user", type=float, default=80.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--comma", action="store_true", help="comma-separated instead of tabs")
    args = parser.parse_args(argv)
    rows = generate_ratings(
        args.users, args.items, args.factors, args.mean_per_user, seed=args.seed
    )
    write_ratings(args.path, rows, "," if args.comma else "\t")
    print(
        f"{len(rows)} synthetic ratings of {args.users} users on {args.items} items -> {args.path}"
    )


if __name__ == "__main__":
    main()
