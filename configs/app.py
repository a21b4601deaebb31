"""``AppArgs``: what ``serve_config.yaml`` passes as the application's ``args``
(read once, when ``deployments.app.build_app`` builds the graph).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, model_validator

from configs.base import StrictModel
from configs.experiments import check_variant_names
from configs.nodes import (
    AspectModelSpec,
    DetectorModelSpec,
    ModerationModelSpec,
    NsfwModelSpec,
    SentimentModelSpec,
    TaggerModelSpec,
    TextClassifierSpec,
    TextVectorCacheConfig,
)
from configs.recommender import RecommenderArgs
from configs.replies import RepliesArgs
from configs.trends import TrendsArgs


class AppArgs(StrictModel):
    """Arguments of the application builder (``args:`` in ``serve_config.yaml``)."""

    moderation_model: ModerationModelSpec = Field(default_factory=ModerationModelSpec)
    """Model of the text moderation node."""
    sentiment_model: SentimentModelSpec = Field(default_factory=SentimentModelSpec)
    """Model of the sentiment node."""
    nsfw_model: NsfwModelSpec = Field(default_factory=NsfwModelSpec)
    """The NSFW image node (off by default)."""
    tagger_model: TaggerModelSpec = Field(default_factory=TaggerModelSpec)
    """The image tagger node (off by default)."""
    detector_model: DetectorModelSpec = Field(default_factory=DetectorModelSpec)
    """The object detector node (off by default)."""
    aspect_model: AspectModelSpec = Field(default_factory=AspectModelSpec)
    """The aspect-sentiment node (off by default)."""
    recommender: RecommenderArgs = Field(default_factory=RecommenderArgs)
    """Embedder + Recommender nodes: events, feed, similar posts, interests."""
    trends: TrendsArgs = Field(default_factory=TrendsArgs)
    """Trends node: trending topics and topic sentiment (needs the recommender)."""
    replies: RepliesArgs = Field(default_factory=RepliesArgs)
    """SmartReply node: reply suggestions."""
    text_vectors: TextVectorCacheConfig = Field(default_factory=TextVectorCacheConfig)
    """Embed once: MiniLM vectors shared by the Embedder, head moderation / sentiment and
    smart-reply nodes, keyed by encoder version and text hash."""
    moderation_variants: dict[str, ModerationModelSpec] = Field(default_factory=dict)
    """Other moderation models run side by side, by variant name ([a-z0-9_-], not "default"):
    deployment TextModeration-<name>, chosen by ingress experiments."""
    sentiment_variants: dict[str, SentimentModelSpec] = Field(default_factory=dict)
    """Other sentiment models run side by side, by variant name: deployment Sentiment-<name>,
    chosen by ingress experiments."""

    def text_classifiers(
        self,
    ) -> dict[str, tuple[TextClassifierSpec, Mapping[str, TextClassifierSpec]]]:
        """Each text task's model spec and its variants' specs, by task."""
        return {
            "moderation": (self.moderation_model, self.moderation_variants),
            "sentiment": (self.sentiment_model, self.sentiment_variants),
        }

    @model_validator(mode="after")
    def _variant_names(self) -> AppArgs:
        check_variant_names("moderation_variants", self.moderation_variants)
        check_variant_names("sentiment_variants", self.sentiment_variants)
        return self

    @model_validator(mode="after")
    def _object_tags_are_candidate_tags(self) -> AppArgs:
        # A label's tag joins the tagger's answer: it must be one of the tagger's candidates.
        tag_map = self.detector_model.tag_map
        candidates = self.tagger_model.tags
        if tag_map is None or candidates is None or not self.detector_model.enabled:
            return self
        unknown = sorted(set(tag_map.values()) - set(candidates))
        if unknown:
            raise ValueError(
                f"detector_model.tag_map maps labels to {unknown}, which are not in "
                f"tagger_model.tags {candidates}; map labels to candidate tags only"
            )
        return self

    @model_validator(mode="after")
    def _trends_need_the_recommender(self) -> AppArgs:
        # Trends read posts from the Recommender's store: without it there is nothing to read.
        if self.trends.enabled and not self.recommender.enabled:
            raise ValueError(
                "trends.enabled is true but recommender.enabled is false; trends read the "
                "posts the recommender stores, so enable the recommender or turn trends off"
            )
        return self
