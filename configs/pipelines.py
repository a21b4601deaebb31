"""Typed configuration of the retraining jobs (``configs/pipelines/*.yaml``).

One YAML file is one job: ``python -m pipelines.text_heads --config configs/pipelines/<x>.yaml``.
Unknown keys are an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from configs.base import Fraction, PositiveSeconds, load_yaml_file
from configs.base import StrictModel as _Strict
from configs.recommender import RankingWeights

__all__ = [
    "AspectJobConfig",
    "BatchInferenceJobConfig",
    "HeadSearchSpace",
    "HeadTuneJobConfig",
    "LogUniformRange",
    "FinetuneTextJobConfig",
    "MlflowConfig",
    "RankingBlendJobConfig",
    "RecommenderMFJobConfig",
    "TextHeadJobConfig",
    "UniformRange",
    "load_aspect_job_config",
    "load_batch_job_config",
    "load_finetune_job_config",
    "load_job_config",
    "load_blend_job_config",
    "load_mf_job_config",
    "load_tune_job_config",
]

# Primary validation metric of each task: what early stopping and promotion compare.
DEFAULT_PROMOTION_METRIC = {"moderation": "macro_auc", "sentiment": "macro_f1"}


# Input features of a text head (models.heads.HEAD_FEATURES); old heads read the embedding alone.
HeadFeatureName = Literal["embedding", "profanity"]
_DEFAULT_HEAD_FEATURES: tuple[HeadFeatureName, ...] = ("embedding",)


def _check_training_share(test_fraction: float, validation_fraction: float) -> None:
    """Refuse splits that leave under 20% of the data for training."""
    if test_fraction + validation_fraction >= 0.8:
        raise ValueError(
            f"test_fraction={test_fraction} + validation_fraction={validation_fraction} "
            "leaves under 20% for training; lower them"
        )


class ReviewLabelsSource(_Strict):
    """Moderator-reviewed decisions of the ingress's audit log, read as extra training rows."""

    mongodb_url: str | None = None
    """MongoDB holding the moderation_decisions collection; default MONGODB_URL. The embedded
    store lives inside an ingress replica, so a job reads reviews only from MongoDB (with
    audit.store_text: true, since rows need their text)."""
    database: str = Field(default="socialplay", min_length=1)
    """Database of the audit log."""
    max_rows: int | None = Field(default=None, ge=1)
    """Read at most this many reviewed decisions."""


class MlflowConfig(_Strict):
    """Where runs are tracked, what the model is registered as, and when it is promoted."""

    tracking_uri: str | None = None
    """MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite:///<state_dir>/mlflow.db
    with artifacts in <state_dir>/mlartifacts."""
    artifact_location: str | None = None
    """Artifact root of a NEW experiment (an absolute path or URI, e.g. s3://bucket/prefix);
    default MLFLOW_ARTIFACT_ROOT, else <state_dir>/mlartifacts for a local store, the server's
    default otherwise."""
    experiment_name: str = Field(default="text-heads", min_length=1)
    """MLflow experiment of the runs."""
    registered_model_name: str = Field(min_length=1)
    """Model Registry name, e.g. "heads-moderation"."""
    serving_alias: str = Field(default="serving", min_length=1)
    """Alias the service loads; promotion moves it to the winning version."""
    promotion_margin: Fraction = 0.0
    """The candidate must beat the serving version's validation score by MORE than this
    (absolute, on the promotion metric) to take the alias."""
    promote: bool = True
    """Run the promotion step (false: register only)."""


class RayTrainOptions(_Strict):
    """How a Ray Train job is scaled and where it keeps checkpoints (shared by the jobs)."""

    num_workers: int = Field(default=1, ge=1, le=256)
    """Ray Train workers."""
    cpus_per_worker: float = Field(default=1.0, gt=0.0)
    """CPUs per Ray Train worker."""
    use_gpu: bool | None = None
    """Train on GPUs; default: when the driver sees one."""
    storage_path: str | None = None
    """Ray Train storage (checkpoints, results); default <state_dir>/ray_results. A run with an
    existing name there would resume, so every run gets a fresh name."""


class TextHeadJobConfig(RayTrainOptions):
    """A text-head training job: data, split, training, tracking and promotion."""

    task: Literal["moderation", "sentiment"]
    """Which head. "moderation": Davidson et al. CSV (hate_speech/offensive multi-label head);
    "sentiment": VADER ground-truth TSV files (positive/negative/neutral head)."""
    data_paths: list[str] = Field(min_length=1)
    """Labelled files (relative paths are from the current directory). moderation: CSV with
    count, hate_speech, offensive_language, neither, class, tweet; sentiment: tab-separated id,
    mean rating (-4..4), text."""
    max_rows: int | None = Field(default=None, ge=20)
    """Use a seeded random sample of this many rows (tests, quick runs)."""
    seed: int = Field(default=0, ge=0)
    """Seed of sampling, splits, init and shuffling."""
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    """Held-out TEST share (per class), never trained on: the evaluation report."""
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Validation share (per class): early stopping and promotion."""
    epochs: int = Field(default=30, ge=0, le=1000)
    """Most passes over the training split (0: untrained)."""
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    """AdamW learning rate."""
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0)
    """AdamW weight decay."""
    batch_size: int = Field(default=128, ge=1, le=65536)
    """Training batch size."""
    hidden_dim: int = Field(default=256, ge=1, le=8192)
    """Hidden width of the head."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout in the head."""
    features: list[HeadFeatureName] = Field(
        default_factory=lambda: list(_DEFAULT_HEAD_FEATURES), min_length=1
    )
    """Head inputs, in order (models.heads.HEAD_FEATURES): embedding = MiniLM vector; profanity =
    alt-profanity-check's probability, stacked next to it. Saved in the checkpoint, so serving
    builds the same inputs."""
    early_stopping_patience: int = Field(default=4, ge=1)
    """Stop after this many epochs without a better validation score."""
    soft_targets: bool = True
    """moderation: train on annotator vote fractions instead of 0/1 labels."""
    promotion_metric: Literal["macro_auc", "macro_f1", "accuracy"] | None = None
    """Validation metric for early stopping and promotion; default per task (moderation
    macro_auc, sentiment macro_f1)."""
    embed_batch_size: int = Field(default=64, ge=1, le=4096)
    """Texts per MiniLM forward pass."""
    embedding_cache: bool = True
    """Keep the embeddings in <state_dir>/cache/embeddings (re-runs skip MiniLM)."""
    report_dir: str | None = None
    """Where the evaluation report is written; default <state_dir>/reports."""
    compare_baselines: bool = True
    """Score the embedded default (alt-profanity-check / VADER) on the test split."""
    mlflow: MlflowConfig
    """Tracking, registration and promotion."""
    review_labels: ReviewLabelsSource | None = None
    """moderation only: append moderator-reviewed decisions (pipelines.review_labels) to the
    TRAINING split; validation and test stay on data_paths."""

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> TextHeadJobConfig:
        _check_training_share(self.test_fraction, self.validation_fraction)
        if self.review_labels is not None and self.task != "moderation":
            raise ValueError(
                f"review_labels is set for task {self.task!r}; reviews label moderation "
                "only, so remove review_labels or use task: moderation"
            )
        return self

    @model_validator(mode="after")
    def _features_listed_once(self) -> TextHeadJobConfig:
        if len(set(self.features)) != len(self.features):
            raise ValueError(
                f"features={self.features} repeats a name; list each input feature once"
            )
        return self

    @property
    def metric(self) -> str:
        """The validation metric early stopping and promotion compare."""
        return self.promotion_metric or DEFAULT_PROMOTION_METRIC[self.task]


class UniformRange(_Strict):
    """A value drawn uniformly from [low, high] (``ray.tune.uniform``); low == high fixes it."""

    low: float
    """Smallest value."""
    high: float
    """Largest value (>= low)."""

    @model_validator(mode="after")
    def _ordered(self) -> UniformRange:
        if self.low > self.high:
            raise ValueError(
                f"low={self.low} is above high={self.high}; give low <= high "
                "(equal values fix the parameter)"
            )
        return self


class LogUniformRange(UniformRange):
    """A value drawn log-uniformly from [low, high] (``ray.tune.loguniform``); both > 0,
    low == high fixes it."""

    low: float = Field(gt=0.0)
    """Smallest value (> 0)."""
    high: float = Field(gt=0.0)
    """Largest value (>= low)."""


class HeadSearchSpace(_Strict):
    """Ray Tune's search over a text head (``python -m pipelines.tune``): the ranges each
    trial draws from, how many trials, and ASHA's early stopping. The drawn values replace
    the job's learning_rate, weight_decay, hidden_dim, dropout and batch_size; max_epochs
    replaces epochs."""

    learning_rate: LogUniformRange = LogUniformRange(low=3e-4, high=1e-2)
    """AdamW learning rate, log-uniform."""
    weight_decay: LogUniformRange = LogUniformRange(low=1e-5, high=1e-2)
    """AdamW weight decay, log-uniform."""
    hidden_dim: list[int] = Field(default_factory=lambda: [128, 256, 512], min_length=1)
    """Hidden widths to choose from (one value fixes it); each 1..8192."""
    dropout: UniformRange = UniformRange(low=0.0, high=0.4)
    """Dropout, uniform within [0, 1)."""
    batch_size: list[int] = Field(default_factory=lambda: [128], min_length=1)
    """Training batch sizes to choose from; each 1..65536."""
    num_samples: int = Field(default=8, ge=1, le=1000)
    """Trials: configurations drawn from the ranges above."""
    max_epochs: int = Field(default=30, ge=1, le=1000)
    """Most epochs of one trial (ASHA's max_t); a trial also stops after the job's
    early_stopping_patience epochs without a better validation score."""
    grace_period: int = Field(default=3, ge=1, le=1000)
    """ASHA: epochs every trial runs before it can be stopped for trailing the others."""
    reduction_factor: float = Field(default=3.0, gt=1.0, le=100.0)
    """ASHA: at each rung only the best 1/reduction_factor of trials go on."""
    max_concurrent_trials: int = Field(default=1, ge=1, le=64)
    """Trials running at once (each takes cpus_per_trial CPUs)."""
    cpus_per_trial: float = Field(default=1.0, gt=0.0, le=256.0)
    """CPUs reserved per trial (also its torch threads, at least 1)."""
    search_seed: int | None = Field(default=None, ge=0)
    """Seed of the random search's draws; default the job's seed. Trials train with the
    job's seed."""

    @model_validator(mode="after")
    def _bounded(self) -> HeadSearchSpace:
        bad_hidden = [value for value in self.hidden_dim if not 1 <= value <= 8192]
        if bad_hidden:
            raise ValueError(f"hidden_dim choices {bad_hidden} are outside 1..8192")
        bad_batch = [value for value in self.batch_size if not 1 <= value <= 65536]
        if bad_batch:
            raise ValueError(f"batch_size choices {bad_batch} are outside 1..65536")
        if not 0.0 <= self.dropout.low <= self.dropout.high < 1.0:
            raise ValueError(
                f"dropout range [{self.dropout.low}, {self.dropout.high}] must lie within [0, 1)"
            )
        if self.grace_period > self.max_epochs:
            raise ValueError(
                f"grace_period={self.grace_period} is above max_epochs={self.max_epochs}; "
                "ASHA needs grace_period <= max_epochs"
            )
        return self


class HeadTuneJobConfig(TextHeadJobConfig):
    """A text-head job searched with Ray Tune (``python -m pipelines.tune``): the job's data,
    split, features, tracking and promotion, plus the search. The best trial on the
    validation split is registered and goes through the job's promotion gate. Each trial is
    one CPU process (search.cpus_per_trial), so num_workers, cpus_per_worker and use_gpu do
    not apply; storage_path holds the trials' results and checkpoints."""

    search: HeadSearchSpace = Field(default_factory=HeadSearchSpace)
    """Ranges, trials and early stopping of the search."""


PositiveType = Literal["view", "like", "comment", "share"]
_DEFAULT_POSITIVES: tuple[PositiveType, ...] = ("like", "comment", "share")


class RecommenderMFJobConfig(RayTrainOptions):
    """The recommender's matrix-factorisation job: source, time split, BPR training, promotion.

    ``python -m pipelines.recommender_mf --config configs/pipelines/recommender_mf.yaml``
    """

    source: Literal["jsonl", "mongodb", "service"]
    """Where the interactions come from. "jsonl": an export file (data_path); "mongodb": the
    event store at MONGODB_URL; "service": the running Recommender node (its export_interactions
    method, through serve.get_deployment_handle; the job must run on the service's Ray
    cluster)."""
    data_path: str | None = None
    """jsonl source: one interaction per line with user_id (or user_hash), post_id, type,
    timestamp_s."""
    app_name: str = Field(default="socialplay", min_length=1)
    """service source: the Serve app name."""
    page_size: int = Field(default=5000, ge=1, le=100_000)
    """Interactions per export page."""
    user_id_salt: str = Field(default="socialplay-mf-v1", min_length=1)
    """Public context of the keyed user-id hash (HMAC-SHA256 under SOCIALPLAY_HASH_SECRET, the
    same secret as the service's): exports and factors.npz hold hashes only. Changing it (or the
    secret) makes every served factor unknown until the next model."""
    positive_types: list[PositiveType] = Field(
        default_factory=lambda: list(_DEFAULT_POSITIVES), min_length=1
    )
    """Interaction types that count as a positive (user, post) pair."""
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Per user, this share of positives before the test part (by time): early stopping and
    promotion."""
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    """Per user, the LAST share of positives by time: held out for the report."""
    k: int = Field(default=20, ge=1, le=1000)
    """Cut-off of recall@k and NDCG@k."""
    candidate_window_s: PositiveSeconds = 259_200.0
    """Evaluation candidates of a user: posts first seen from this long before their first
    held-out positive to their last, in s (3 days, like a feed request's posts)."""
    promotion_metric: Literal["ndcg_at_k", "recall_at_k"] = "ndcg_at_k"
    """Validation metric for early stopping and promotion."""
    rank: int = Field(default=16, ge=1, le=1024)
    """Latent factors per user / post."""
    epochs: int = Field(default=40, ge=0, le=10_000)
    """Most passes (0: untrained)."""
    negatives_per_positive: int = Field(default=4, ge=1, le=100)
    """Uniformly sampled negative posts per positive."""
    learning_rate: float = Field(default=0.01, gt=0.0, le=1.0)
    """Adam learning rate."""
    l2: float = Field(default=0.01, ge=0.0, le=1.0)
    """L2 penalty on used factors."""
    batch_size: int = Field(default=1024, ge=1, le=1_000_000)
    """Positives per step."""
    early_stopping_patience: int = Field(default=10, ge=1)
    """Stop after this many epochs without a better score."""
    seed: int = Field(default=0, ge=0)
    """Seed of init, negatives and shuffling."""
    output_dir: str | None = None
    """Where registered factors are written for serving (<output_dir>/<model>/v<N>); default
    <state_dir>/models. Point collaborative_model_path at the printed one."""
    report_dir: str | None = None
    """Evaluation report directory; default <state_dir>/reports."""
    mlflow: MlflowConfig
    """Tracking, registration and promotion."""

    @model_validator(mode="after")
    def _source_has_its_input(self) -> RecommenderMFJobConfig:
        if self.source == "jsonl" and not self.data_path:
            raise ValueError('source "jsonl" needs data_path: the export file to read')
        _check_training_share(self.test_fraction, self.validation_fraction)
        return self


class RankingBlendJobConfig(_Strict):
    """The learned blend of the feed's score terms: impressions in, term weights out.

    ``python -m pipelines.ranking_blend --config configs/pipelines/ranking_blend.yaml``
    """

    source: Literal["jsonl", "mongodb", "service"]
    """Where impressions and interactions come from. "service": the running Recommender node
    (export_impressions and export_interactions through serve.get_deployment_handle; the job
    runs on the service's Ray cluster); "mongodb": the impressions and interactions
    collections at MONGODB_URL; "jsonl": two export files."""
    impressions_path: str | None = None
    """jsonl source: one logged impression per line (feed_id, user_hash, post_id, served_at_s,
    position and one key per term, null when off)."""
    interactions_path: str | None = None
    """jsonl source: one interaction per line with user_id (or user_hash), post_id, type,
    timestamp_s."""
    app_name: str = Field(default="socialplay", min_length=1)
    """service source: the Serve app name."""
    page_size: int = Field(default=5000, ge=1, le=100_000)
    """Rows per export page."""
    user_id_salt: str = Field(default="socialplay-blend-v1", min_length=1)
    """Public context of the keyed user-id hash; must equal the Recommender's
    impressions.user_id_salt, or no event meets its impression."""
    positive_types: list[PositiveType] = Field(
        default_factory=lambda: list(_DEFAULT_POSITIVES), min_length=1
    )
    """Interaction types that make a seen impression positive."""
    attribution_window_s: PositiveSeconds = 86_400.0
    """A view or reaction counts for the latest impression of that post to that user served
    at most this long before it, in s."""
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.8)
    """The LATEST share of feeds by served time: held out; the learned and the serving blend
    are compared on it and promotion follows that comparison."""
    min_impressions: int = Field(default=200, ge=2)
    """Fewest seen impressions to fit on; fewer is an error that says so."""
    min_positives: int = Field(default=10, ge=1)
    """Fewest engaged impressions in the training part and in the held-out part each."""
    objective: Literal["pairwise", "pointwise"] = "pairwise"
    """pairwise: logistic regression on term differences of (engaged, ignored) pairs of one
    feed; pointwise: logistic regression of engaged vs not per impression."""
    regularisation_c: float = Field(default=1.0, gt=0.0)
    """Inverse L2 strength of scikit-learn's LogisticRegression (C)."""
    max_pairs_per_feed: int = Field(default=100, ge=1, le=100_000)
    """pairwise: at most this many sampled pairs per feed."""
    min_weight: float = Field(default=0.01, ge=0.0, lt=0.2)
    """Floor of each learned weight (weights sum to 1): a cold-start feed, ranked by freshness
    and popularity alone, still has weights to rank by."""
    seed: int = Field(default=0, ge=0)
    """Seed of the pair sampling."""
    k: int = Field(default=20, ge=1, le=1000)
    """Cut-off of NDCG@k."""
    gain_confidence: float = Field(default=0.95, ge=0.5, lt=1.0)
    """Promotion also needs the one-sided lower bound of the learned blend's per-feed NDCG
    gain over the serving blend, at this confidence (bootstrap over held-out feeds), above 0:
    a win within the noise of the held-out feeds does not promote."""
    bootstrap_rounds: int = Field(default=2000, ge=100, le=100_000)
    """Bootstrap resamples of the held-out feeds for that bound."""
    hand_set_weights: RankingWeights = Field(default_factory=RankingWeights)
    """The serving blend while no learned version holds the serving alias: the Recommender's
    `weights` (keep them equal)."""
    use_ray: bool = True
    """Fit in a Ray task (ray.remote; a local cluster unless RAY_ADDRESS names one); false:
    in this process."""
    num_cpus: float = Field(default=1.0, gt=0.0)
    """CPUs of the fitting task."""
    output_dir: str | None = None
    """Where promoted weights are written for serving (<output_dir>/<model>/v<N>/blend.json);
    default <state_dir>/models. Point the Recommender's blend_weights_path at the printed one."""
    report_dir: str | None = None
    """Evaluation report directory; default <state_dir>/reports."""
    mlflow: MlflowConfig
    """Tracking, registration and promotion (held-out NDCG@k decides)."""

    @model_validator(mode="after")
    def _source_has_its_input(self) -> RankingBlendJobConfig:
        if self.source == "jsonl" and not (self.impressions_path and self.interactions_path):
            raise ValueError(
                'source "jsonl" needs impressions_path and interactions_path: the two exports'
            )
        return self


class BatchInferenceJobConfig(_Strict):
    """Ray Data batch job: re-embed stored posts and rescore them with a moderation head."""

    input_path: str
    """JSONL of posts, one object per line with post_id and text (an export)."""
    output_path: str
    """JSONL results (post_id, embedding, scores, versions; never the text). Also the progress
    record: a rerun skips every post_id already in it."""
    embed: bool = True
    """Write each post's MiniLM embedding."""
    moderation_head_path: str | None = None
    """Moderation head checkpoint directory (pipelines.text_heads output)."""
    moderation_model_name: str | None = None
    """Or a registered head: its name in the MLflow Model Registry."""
    moderation_alias: str = Field(default="serving", min_length=1)
    """Alias of the registered head to load."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default as storage.registry."""
    concurrency: int = Field(default=2, ge=1, le=256)
    """Model actors in the map_batches pool."""
    cpus_per_actor: float = Field(default=1.0, gt=0.0)
    """CPUs per model actor."""
    batch_size: int = Field(default=64, ge=1, le=4096)
    """Posts per model call."""
    max_rows: int | None = Field(default=None, ge=1)
    """Process at most this many not-yet-done posts this run (chunked backlogs)."""

    @model_validator(mode="after")
    def _one_head_source(self) -> BatchInferenceJobConfig:
        if self.moderation_head_path and self.moderation_model_name:
            raise ValueError(
                "set moderation_head_path or moderation_model_name, not both: which head "
                "rescored the backlog must be unambiguous"
            )
        if not (self.embed or self.moderation_head_path or self.moderation_model_name):
            raise ValueError(
                "nothing to do: embed is false and no moderation head is configured; enable "
                "embed or set moderation_head_path / moderation_model_name"
            )
        return self


LoraTargetName = Literal[
    "query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"
]


_DEFAULT_LORA_TARGETS: tuple[LoraTargetName, ...] = (
    "query",
    "key",
    "value",
    "attention.output.dense",
)


class FinetuneTextJobConfig(RayTrainOptions):
    """Fine-tune all-MiniLM-L6-v2 with LoRA adapters plus a head (models.lora_text).

    ``python -m pipelines.finetune_text --config configs/pipelines/finetune_moderation.yaml``
    """

    task: Literal["moderation", "sentiment"]
    """As in the text-head job: "moderation" (Davidson CSV) or "sentiment" (VADER TSV)."""
    data_paths: list[str] = Field(min_length=1)
    """Labelled files split into train / validation / test, exactly as the text-head job
    splits them (same seed and fractions give the same test rows)."""
    cross_domain_paths: list[str] = Field(default_factory=list)
    """Labelled files of the same task scored only at the end, never trained on or used for a
    choice (sentiment: e.g. the Amazon review snippets when training on tweets + NYT)."""
    max_rows: int | None = Field(default=None, ge=20)
    """Use a seeded random sample of this many rows (tests, quick runs)."""
    seed: int = Field(default=0, ge=0)
    """Seed of sampling, splits, init and shuffling."""
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    """Held-out TEST share (per class), never trained on."""
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Validation share (per class): early stopping and the choice of the best step."""
    soft_targets: bool = True
    """moderation: train on annotator vote fractions instead of 0/1 labels."""
    features: list[HeadFeatureName] = Field(
        default_factory=lambda: list(_DEFAULT_HEAD_FEATURES), min_length=1
    )
    """Head inputs: embedding (the fine-tuned mean-pooled vector, always first) and optionally
    profanity (alt-profanity-check's score, as the stacked text head)."""
    lora_rank: int = Field(default=8, ge=1, le=256)
    """Rank r of every LoRA adapter."""
    lora_alpha: float = Field(default=16.0, gt=0.0)
    """LoRA scale numerator (updates are multiplied by alpha / r)."""
    lora_targets: list[LoraTargetName] = Field(
        default_factory=lambda: list(_DEFAULT_LORA_TARGETS), min_length=1
    )
    """Encoder linear layers that get adapters (output.dense = the feed-forward output)."""
    lora_layers: list[int] = Field(default_factory=list)
    """Encoder layers (0-5) that get adapters; empty = all. Fewer low layers = a shorter
    backward pass."""
    train_layer_norms: bool = False
    """Also train (and save) the encoder's LayerNorm weights (~20k values)."""
    hidden_dim: int = Field(default=0, ge=0, le=8192)
    """Hidden width of the head; 0 = one linear layer."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout before the head's output layer."""
    max_length: int = Field(default=64, ge=8, le=512)
    """Tokens kept per text, in training and serving."""
    epochs: int = Field(default=2, ge=1, le=100)
    """Most passes over the training split."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Training batch size (texts)."""
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    """AdamW learning rate of the adapters (and LayerNorms)."""
    head_learning_rate: float = Field(default=2e-3, gt=0.0, le=1.0)
    """AdamW learning rate of the head."""
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0)
    """AdamW weight decay."""
    warmup_fraction: float = Field(default=0.06, ge=0.0, lt=1.0)
    """Share of the steps with a linear learning-rate warm-up; then a linear decay to 0."""
    eval_every_steps: int = Field(default=200, ge=1)
    """Score the validation split every this many steps (and at each epoch's end)."""
    early_stopping_patience: int = Field(default=4, ge=1)
    """Stop after this many validation scores without improvement."""
    promotion_metric: Literal["macro_auc", "macro_f1", "accuracy"] | None = None
    """Validation metric that picks the best step; default per task (moderation macro_auc,
    sentiment macro_f1)."""
    torch_threads: int = Field(default=1, ge=1, le=256)
    """torch.set_num_threads in the worker. On a shared 2-core box 1 is much faster than 2
    (two threads spin-wait on each other while other processes hold the cores)."""
    use_ray_train: bool = True
    """Train with a Ray Train TorchTrainer (false: the same loop in this process, for a box
    whose Ray cluster is busy; the figures do not depend on it)."""
    compare_frozen: bool = True
    """Also fit a logistic regression on frozen MiniLM vectors (the embed-once path) on the
    same training rows and score it on the same test and cross-domain rows (the report's
    baseline row)."""
    output_dir: str | None = None
    """Where the artifact directory <run>/ is written; default <state_dir>/finetuned."""
    report_dir: str | None = None
    """Where the evaluation report is written; default <state_dir>/reports."""
    mlflow: MlflowConfig
    """Tracking (params, per-evaluation metrics, report and artifact are logged; the run is
    not registered or promoted by this job)."""

    @model_validator(mode="after")
    def _checks(self) -> FinetuneTextJobConfig:
        _check_training_share(self.test_fraction, self.validation_fraction)
        if self.features[0] != "embedding" or len(set(self.features)) != len(self.features):
            raise ValueError(
                f"features={self.features}: list embedding first, then optionally profanity, "
                "each once"
            )
        bad = [layer for layer in self.lora_layers if not 0 <= layer <= 5]
        if bad:
            raise ValueError(f"lora_layers={self.lora_layers}: MiniLM-L6 has layers 0-5")
        return self

    @property
    def metric(self) -> str:
        """The validation metric that picks the best step."""
        return self.promotion_metric or DEFAULT_PROMOTION_METRIC[self.task]


_WHAT, _EXAMPLE = "job config", "configs/pipelines/moderation_head.yaml"


def load_finetune_job_config(path: str | Path) -> FinetuneTextJobConfig:
    """Read and validate a LoRA fine-tuning job YAML; errors name the file and the field."""
    return load_yaml_file(path, FinetuneTextJobConfig, _WHAT, _EXAMPLE)


def load_job_config(path: str | Path) -> TextHeadJobConfig:
    """Read and validate one text-head job YAML; errors name the file and the bad field."""
    return load_yaml_file(path, TextHeadJobConfig, _WHAT, _EXAMPLE)


def load_mf_job_config(path: str | Path) -> RecommenderMFJobConfig:
    """Read and validate a matrix-factorisation job YAML; errors name the file and field."""
    return load_yaml_file(path, RecommenderMFJobConfig, _WHAT, _EXAMPLE)


def load_tune_job_config(path: str | Path) -> HeadTuneJobConfig:
    """Read and validate a Ray Tune head-search YAML; errors name the file and the field."""
    example = "configs/pipelines/tune_moderation_head.yaml"
    return load_yaml_file(path, HeadTuneJobConfig, _WHAT, example)


def load_batch_job_config(path: str | Path) -> BatchInferenceJobConfig:
    """Read and validate a batch inference job YAML; errors name the file and field."""
    return load_yaml_file(path, BatchInferenceJobConfig, _WHAT, _EXAMPLE)


class AspectJobConfig(RayTrainOptions):
    """Fine-tune the aspect-sentiment model (models.aspects: one LoRA MiniLM encoder with a
    term head, a category head and a term tagger) on MAMS.

    ``python -m pipelines.finetune_aspects --config configs/pipelines/finetune_aspects.yaml``
    """

    term_data_path: str = Field(min_length=1)
    """MAMS-ATSA training XML (SemEval-2014 format: aspect terms with offsets and polarity).
    A seeded share of its sentences is carved off as the validation split."""
    category_data_path: str | None = None
    """MAMS-ACSA training XML (aspect categories with polarity), split the same way; unset:
    the category head stays untrained and the job says so."""
    heldout_term_path: str | None = None
    """ATSA file scored only at the end (never trained on, never used for a choice)."""
    heldout_category_path: str | None = None
    """ACSA file scored only at the end (never trained on, never used for a choice)."""
    max_sentences: int | None = Field(default=None, ge=20)
    """Use a seeded sample of this many sentences of each training file (tests, timing)."""
    seed: int = Field(default=0, ge=0)
    """Seed of sampling, splits, init and shuffling."""
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Share of the training sentences kept for validation: early stopping, the best step,
    promotion and the VADER window baseline's width."""
    category_fraction: Fraction = 1.0
    """Share of the category rows used in each epoch (fresh sample per epoch): the category
    head needs fewer passes than the term head, and each row costs an encoder pass."""
    tag_fraction: Fraction = 1.0
    """Share of the term sentences the tagger trains on in each epoch (fresh sample)."""
    lora_rank: int = Field(default=8, ge=1, le=256)
    """Rank r of every LoRA adapter."""
    lora_alpha: float = Field(default=16.0, gt=0.0)
    """LoRA scale numerator (updates are multiplied by alpha / r)."""
    lora_targets: list[LoraTargetName] = Field(
        default_factory=lambda: list(_DEFAULT_LORA_TARGETS), min_length=1
    )
    """Encoder linear layers that get adapters (output.dense = the feed-forward output)."""
    lora_layers: list[int] = Field(default_factory=list)
    """Encoder layers (0-5) that get adapters; empty = all. Only the top layers: the backward
    pass stops below them (about half the training cost with [3, 4, 5])."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout before each head."""
    max_length: int = Field(default=128, ge=16, le=512)
    """Tokens kept per text-aspect pair, in training and serving (the text is cut)."""
    epochs: int = Field(default=3, ge=1, le=100)
    """Most passes over the training split."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Training batch size (pairs or texts)."""
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    """AdamW learning rate of the adapters."""
    head_learning_rate: float = Field(default=2e-3, gt=0.0, le=1.0)
    """AdamW learning rate of the heads."""
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0)
    """AdamW weight decay."""
    warmup_fraction: float = Field(default=0.06, ge=0.0, lt=1.0)
    """Share of the steps with a linear learning-rate warm-up; then a linear decay to 0."""
    eval_every_steps: int = Field(default=300, ge=1)
    """Score the validation split every this many steps (and at each epoch's end)."""
    early_stopping_patience: int = Field(default=3, ge=1)
    """Stop after this many validation scores without improvement."""
    max_train_s: PositiveSeconds | None = None
    """Stop training (keeping the best step so far) after this many seconds: a budget on a
    shared box. Unset: no limit."""
    torch_threads: int = Field(default=1, ge=1, le=256)
    """torch.set_num_threads in the worker (1 on a shared 2-core box)."""
    use_ray_train: bool = True
    """Train with a Ray Train TorchTrainer (false: the same loop in this process)."""
    output_dir: str | None = None
    """Where the artifact directory <run>/ is written; default <state_dir>/finetuned."""
    report_dir: str | None = None
    """Where the evaluation report is written; default <state_dir>/reports."""
    mlflow: MlflowConfig
    """Tracking, registration and promotion (validation term macro-F1 decides)."""

    @model_validator(mode="after")
    def _layers_exist(self) -> AspectJobConfig:
        bad = [layer for layer in self.lora_layers if not 0 <= layer <= 5]
        if bad:
            raise ValueError(f"lora_layers={self.lora_layers}: MiniLM-L6 has layers 0-5")
        return self


def load_blend_job_config(path: str | Path) -> RankingBlendJobConfig:
    """Read and validate a learned-blend job YAML; errors name the file and the field."""
    return load_yaml_file(
        path, RankingBlendJobConfig, _WHAT, "configs/pipelines/ranking_blend.yaml"
    )


def load_aspect_job_config(path: str | Path) -> AspectJobConfig:
    """Read and validate an aspect-sentiment job YAML; errors name the file and the field."""
    return load_yaml_file(path, AspectJobConfig, _WHAT, "configs/pipelines/finetune_aspects.yaml")
