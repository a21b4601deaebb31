"""Learn the feed's term weights from its impression log, evaluate on later feeds, promote.

    python -m pipelines.ranking_blend --config configs/pipelines/ranking_blend.yaml

Steps, in order (each fails with a clear message before the next starts):
1. read the job config (`configs.pipelines.RankingBlendJobConfig`);
2. read the Recommender's impression log (what each served feed showed, with each term's value;
   user ids already hashed) and the interactions (user ids hashed at the source with the same
   salt) -- from the running node (paged), MongoDB at MONGODB_URL, or two JSONL exports;
3. label the impressions (`models.blend.label_impressions`): seen when a view or reaction came
   within ``attribution_window_s``, positive when a like, comment or share did; unseen ones
   are dropped;
4. hold out the LATEST ``holdout_fraction`` of feeds by served time; refuse to go on with too
   few impressions or positives in either part;
5. fit non-negative term weights with scikit-learn's logistic regression (`models.blend.
   fit_blend`, pairwise by default) in a Ray task;
6. score NDCG@k of re-ranking each held-out feed by the learned blend, by the serving blend
   (the version holding the serving alias, else the hand-set weights) and by the hand-set
   weights, on the same impressions;
7. log everything to MLflow, register the weights, move the serving alias only when the
   learned blend beats the serving blend on the held-out feeds by the margin, and write the
   promoted weights where the Recommender loads them (``blend_weights_path``, live).
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from configs.pipelines import RankingBlendJobConfig, load_blend_job_config
from models.blend import (
    BLEND_FILENAME,
    TERMS,
    BlendWeights,
    LabelledImpressions,
    blend_ndcg,
    blend_order_scores,
    feed_ndcgs,
    fit_blend,
    label_impressions,
    paired_gain_lower_bound,
    time_holdout,
    weight_vector,
)
from models.ranking import ScoreWeights
from pipelines.interaction_sources import (
    jsonl_interactions,
    mongodb_database,
    mongodb_interactions,
    recommender_handle,
    service_interactions,
)
from pipelines.jobs import job_dir, new_run_name, read_jsonl, run_cli, say, write_json_report
from pipelines.registry import (
    PyfuncModel,
    Registration,
    RunRecord,
    ServingScore,
    log_and_register,
    serving_version_files,
)
from storage.documents import ImpressionRepository

__all__ = [
    "BlendData",
    "BlendJobResult",
    "evaluate_blends",
    "fit_weights",
    "held_out_gain",
    "load_data",
    "main",
    "run_job",
    "split_data",
]

logger = logging.getLogger("pipelines.ranking_blend")

HAND_SET = "hand-set"


# ---- 2. data ------------------------------------------------------------------------------
def _impression(row: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "feed_id": str(row["feed_id"]),
        "user_hash": str(row["user_hash"]),
        "post_id": str(row["post_id"]),
        "served_at_s": float(row["served_at_s"]),
        "position": int(row["position"]),
    }
    for term in TERMS:
        value = row.get(term)
        result[term] = None if value is None else float(value)
    return result


def _jsonl_rows(
    config: RankingBlendJobConfig,
) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
    path = Path(str(config.impressions_path))
    if not path.is_file():
        raise ValueError(
            f"impressions file {str(path)!r} does not exist; export one "
            "(the Recommender's export_impressions) or fix impressions_path"
        )
    impressions = read_jsonl(
        path,
        _impression,
        "an impression",
        f"feed_id, user_hash, post_id, served_at_s, position and {', '.join(TERMS)}",
    )
    interactions = jsonl_interactions(
        Path(str(config.interactions_path)), config.user_id_salt, "interactions_path"
    )
    return impressions, interactions


def _mongodb_rows(
    config: RankingBlendJobConfig,
) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
    database = mongodb_database()

    def impressions() -> Iterator[dict[str, Any]]:
        repository = ImpressionRepository(database, max_impressions=100_000_000)
        after: str | None = None
        while True:
            page = repository.page_after(after, config.page_size)
            yield from (_impression(d) for d in page)
            if len(page) < config.page_size:
                return
            after = str(page[-1]["_id"])

    interactions = mongodb_interactions(database, config.page_size, config.user_id_salt)
    return impressions(), interactions


def _service_rows(
    config: RankingBlendJobConfig,
) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
    handle = recommender_handle(config.app_name)

    def impressions() -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            page = handle.export_impressions.remote(after, config.page_size).result(timeout_s=120)
            yield from (_impression(asdict(row)) for row in page.impressions)
            after = page.next_after
            if after is None:
                return

    interactions = service_interactions(handle, config.page_size, config.user_id_salt)
    return impressions(), interactions


@dataclass(frozen=True)
class BlendData:
    """Labelled impressions and how many rows of each kind were read."""

    impressions: LabelledImpressions
    interactions_read: int


def load_data(config: RankingBlendJobConfig) -> BlendData:
    """Steps 2-3: read the configured source and label the impressions.

    Raises:
        ValueError: Missing or malformed source; an empty log; no impression seen.
    """
    if config.source == "jsonl":
        impressions, interactions = _jsonl_rows(config)
    elif config.source == "mongodb":
        impressions, interactions = _mongodb_rows(config)
    else:
        impressions, interactions = _service_rows(config)
    logged = list(impressions)
    if not logged:
        raise ValueError(
            f"the impression log from source {config.source!r} is empty; the Recommender logs "
            "feeds it ranks (impressions.enabled) -- serve feeds, send views, then run the job"
        )
    counted = 0

    def counting() -> Iterator[dict[str, Any]]:
        nonlocal counted
        for row in interactions:
            counted += 1
            yield row

    data = label_impressions(logged, counting(), config.attribution_window_s, config.positive_types)
    if len(data) == 0:
        raise ValueError(
            f"none of {len(logged)} logged impressions was seen: no view or reaction of the "
            f"same user and post within {config.attribution_window_s:.0f} s in {counted} "
            "interactions (are feeds' posts sent back as `view` events? is user_id_salt the "
            "Recommender's impressions.user_id_salt?)"
        )
    return BlendData(data, counted)


# ---- 4. split -----------------------------------------------------------------------------
def split_data(
    config: RankingBlendJobConfig, data: LabelledImpressions
) -> tuple[LabelledImpressions, LabelledImpressions]:
    """The earlier feeds to fit on, the later ones held out; refuses too little of either.

    Raises:
        ValueError: Fewer than ``min_impressions`` seen impressions, or fewer than
            ``min_positives`` positives in either part.
    """
    if len(data) < config.min_impressions:
        raise ValueError(
            f"{len(data)} seen impressions (of {data.logged} logged); the blend needs at least "
            f"min_impressions={config.min_impressions} -- wait for more feeds and views"
        )
    train, held_out = time_holdout(data, config.holdout_fraction)
    for name, part in (("training", train), ("held-out", held_out)):
        positives = int(part.positive.sum())
        if positives < config.min_positives:
            raise ValueError(
                f"the {name} feeds hold {positives} engaged impressions (of {len(part)} seen); "
                f"min_positives={config.min_positives} -- wait for more engagement"
            )
    return train, held_out


# ---- 5. fit -------------------------------------------------------------------------------
def fit_weights(
    config: RankingBlendJobConfig, train: LabelledImpressions
) -> tuple[ScoreWeights, dict[str, float]]:
    """Step 5: `fit_blend` in a Ray task (``use_ray``) or in this process."""
    arguments = (
        train,
        config.objective,
        config.regularisation_c,
        config.max_pairs_per_feed,
        config.min_weight,
        config.seed,
    )
    if not config.use_ray:
        return fit_blend(*arguments)
    import ray

    if not ray.is_initialized():
        # A local cluster unless RAY_ADDRESS points at a running one (needed for "service").
        ray.init(include_dashboard=False)
    task: Any = ray.remote(num_cpus=config.num_cpus)(fit_blend)
    weights, stats = ray.get(task.remote(*arguments))
    return weights, stats


# ---- 6. comparison ------------------------------------------------------------------------
def _hand_set(config: RankingBlendJobConfig) -> ScoreWeights:
    return ScoreWeights(**config.hand_set_weights.model_dump())


def _serving_blend(config: RankingBlendJobConfig) -> tuple[str, ScoreWeights]:
    """The version holding the serving alias and its weights; the hand-set weights when none
    does."""
    serving = serving_version_files(config.mlflow, BLEND_FILENAME, "pipelines.ranking_blend")
    if serving is None:
        return HAND_SET, _hand_set(config)
    version, directory = serving
    return version, BlendWeights.load(directory).weights


def evaluate_blends(
    blends: dict[str, ScoreWeights], parts: dict[str, LabelledImpressions], k: int
) -> dict[str, dict[str, dict[str, float]]]:
    """NDCG@k of each blend on each part, on the same impressions."""
    return {
        part: {name: blend_ndcg(weights, data, k) for name, weights in blends.items()}
        for part, data in parts.items()
    }


def held_out_gain(
    config: RankingBlendJobConfig,
    learned: ScoreWeights,
    serving: ScoreWeights,
    held_out: LabelledImpressions,
) -> dict[str, float]:
    """The learned blend's per-feed NDCG@k gain over the serving blend on the held-out feeds:
    its mean and its one-sided lower bound at ``gain_confidence`` (the gate's second test)."""
    candidate = feed_ndcgs(learned, held_out, config.k)
    baseline = feed_ndcgs(serving, held_out, config.k)
    lower = paired_gain_lower_bound(
        candidate, baseline, config.gain_confidence, config.bootstrap_rounds, config.seed
    )
    return {
        "mean": float((candidate - baseline).mean()),
        "lower_bound": lower,
        "confidence": config.gain_confidence,
        "feeds": float(candidate.size),
    }


# ---- 7. MLflow ----------------------------------------------------------------------------
def _blend_pyfunc_model() -> PythonModel:
    """A pyfunc PythonModel scoring rows of term values with its ``blend`` artifact.

    Built inside this function so MLflow pickles it by value (loading needs ``models`` only).
    """

    class BlendPyfunc(PythonModel):
        """pyfunc wrapper: one column per term (NaN: off) in, the blended ``score`` out."""

        # No type hints on these two: MLflow reads them as a (wrong) input schema.
        def load_context(self, context):  # type: ignore[no-untyped-def]
            self._weights = BlendWeights.load(context.artifacts["blend"]).weights

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            terms = model_input[list(TERMS)].to_numpy(dtype=float)
            scores = blend_order_scores(weight_vector(self._weights), terms)
            return pd.DataFrame({"score": scores})

    return BlendPyfunc()


def _register_and_promote(
    config: RankingBlendJobConfig,
    run_name: str,
    blend_dir: Path,
    report: dict[str, Any],
    report_path: Path,
    serving_version: str,
) -> Registration:
    metric = "ndcg_at_k"
    params: dict[str, object] = dict(
        config.model_dump(exclude={"mlflow", "impressions_path", "interactions_path"})
    )
    metrics = {
        f"{part}_{blend}_{key}": value
        for part in ("train", "held_out")
        for blend, values in report[part].items()
        for key, value in values.items()
    }
    metrics.update({f"weight_{t}": w for t, w in report["learned_weights"].items()})
    # A made-up row: the input example is never a logged impression.
    example = pd.DataFrame({t: [0.5] for t in TERMS})
    model = PyfuncModel(
        python_model=_blend_pyfunc_model(),
        artifacts={"blend": str(blend_dir)},
        input_example=example,
        output_example=pd.DataFrame({"score": [0.5]}),
        pip_requirements=["numpy>=2.0", "pandas>=2.2"],
    )
    serving = ServingScore(serving_version, report["held_out"]["serving"][metric])
    gain = report["held_out_gain"]
    metrics.update({f"held_out_gain_{key}": value for key, value in gain.items()})
    return log_and_register(
        config.mlflow,
        run_name,
        RunRecord(params, (), metrics, (report_path,)),
        model,
        metric,
        float(report["held_out"]["learned"][metric]),
        lambda: serving,
        gain_lower_bound=gain["lower_bound"],
    )


# ---- the job ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlendJobResult:
    """What a finished job produced."""

    run_name: str
    weights: ScoreWeights
    report: dict[str, Any]
    registration: Registration
    blend_weights_path: Path | None  # set when promoted: give it to the Recommender


def _say_metrics(report: dict[str, Any], k: int) -> None:
    for part in ("train", "held_out"):
        for name, values in report[part].items():
            say(
                f"{part:8s} {name:8s} NDCG@{k} {values['ndcg_at_k']:.4f} "
                f"(logged order {values['logged_ndcg_at_k']:.4f}, {int(values['feeds'])} feeds)"
            )


def run_job(config: RankingBlendJobConfig) -> BlendJobResult:
    """Run every step of the job; see the module docstring."""
    loaded = load_data(config)
    data = loaded.impressions
    train, held_out = split_data(config, data)
    say(
        f"data: {data.logged} impressions logged, {len(data)} seen "
        f"({int(data.positive.sum())} engaged) from {loaded.interactions_read} interactions; "
        f"train {len(train)} in {int(train.feeds.max()) + 1} feeds, held out (latest) "
        f"{len(held_out)} in {int(held_out.feeds.max()) + 1} feeds"
    )
    weights, stats = fit_weights(config, train)
    learned = {t: float(getattr(weights, t)) for t in TERMS}
    say(f"learned weights: {learned}")
    serving_version, serving_weights = _serving_blend(config)
    blends = {"learned": weights, "serving": serving_weights}
    if serving_version != HAND_SET:
        blends[HAND_SET] = _hand_set(config)
    run_name = new_run_name("ranking-blend")
    report: dict[str, Any] = {
        "run_name": run_name,
        "k": config.k,
        "counts": {
            "impressions_logged": data.logged,
            "impressions_seen": len(data),
            "engaged": int(data.positive.sum()),
            "interactions": loaded.interactions_read,
            "train": len(train),
            "held_out": len(held_out),
        },
        "serving_version": serving_version,
        "learned_weights": learned,
        "serving_weights": {t: float(getattr(serving_weights, t)) for t in TERMS},
        "fit": stats,
        **evaluate_blends(blends, {"train": train, "held_out": held_out}, config.k),
        "held_out_gain": held_out_gain(config, weights, serving_weights, held_out),
    }
    _say_metrics(report, config.k)
    report_path = write_json_report(job_dir(config.report_dir, "reports"), run_name, report)
    blend_dir = job_dir(None, "blend_runs") / run_name / "blend"
    BlendWeights(weights, run_name, {"trained_on": report["counts"]}).save(blend_dir)
    registration = _register_and_promote(
        config, run_name, blend_dir, report, report_path, serving_version
    )
    served: Path | None = None
    if registration.promotion.promoted:
        # A fresh directory per version: the node reloads when blend_weights_path changes.
        name, version = registration.model_name, registration.version
        served = job_dir(config.output_dir, "models") / name / f"v{version}"
        partial = served.with_name(f"{served.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        BlendWeights(weights, f"{name}/{version}", {"trained_on": report["counts"]}).save(partial)
        shutil.rmtree(served, ignore_errors=True)
        partial.replace(served)
        say(f"promoted: set the Recommender user_config blend_weights_path: {served}")
    else:
        say(f"not promoted: {registration.promotion.reason}")
    return BlendJobResult(run_name, weights, report, registration, served)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.ranking_blend --config <job YAML>``."""

    def run(config_path: str) -> dict[str, object]:
        result = run_job(load_blend_job_config(config_path))
        return {
            "run_name": result.run_name,
            "weights": {t: getattr(result.weights, t) for t in TERMS},
            "held_out_ndcg": {
                name: values["ndcg_at_k"] for name, values in result.report["held_out"].items()
            },
            "blend_weights_path": str(result.blend_weights_path or ""),
            **result.registration.as_dict(),
        }

    return run_cli(__doc__.split("\n\n")[0], argv, run)


if __name__ == "__main__":
    sys.exit(main())
