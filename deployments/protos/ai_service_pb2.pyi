from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendationRequest(_message.Message):
    __slots__ = ("user_id", "candidate_post_ids", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_POST_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    candidate_post_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., candidate_post_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class RecommendationResponse(_message.Message):
    __slots__ = ("posts", "unknown_post_ids", "filtered_post_ids", "cold_start", "degraded", "degraded_reason")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_POST_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERED_POST_IDS_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[ScoredPost]
    unknown_post_ids: _containers.RepeatedScalarFieldContainer[str]
    filtered_post_ids: _containers.RepeatedScalarFieldContainer[str]
    cold_start: bool
    degraded: bool
    degraded_reason: str
    def __init__(self, posts: _Optional[_Iterable[_Union[ScoredPost, _Mapping]]] = ..., unknown_post_ids: _Optional[_Iterable[str]] = ..., filtered_post_ids: _Optional[_Iterable[str]] = ..., cold_start: _Optional[bool] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ...) -> None: ...

class ScoredPost(_message.Message):
    __slots__ = ("post_id", "score")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    score: float
    def __init__(self, post_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ModerationRequest(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "device")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    device: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class ModerationResponse(_message.Message):
    __slots__ = ("is_safe", "action", "scores", "overall", "flagged_categories", "model", "degraded", "degraded_reason", "decision_id")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    IS_SAFE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    is_safe: bool
    action: str
    scores: _containers.ScalarMap[str, float]
    overall: float
    flagged_categories: _containers.RepeatedScalarFieldContainer[str]
    model: ModelRef
    degraded: bool
    degraded_reason: str
    decision_id: str
    def __init__(self, is_safe: _Optional[bool] = ..., action: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ..., overall: _Optional[float] = ..., flagged_categories: _Optional[_Iterable[str]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class AspectSentimentRequest(_message.Message):
    __slots__ = ("text", "aspects", "categories")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ASPECTS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    text: str
    aspects: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., aspects: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class AspectScores(_message.Message):
    __slots__ = ("positive", "negative", "neutral")
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    positive: float
    negative: float
    neutral: float
    def __init__(self, positive: _Optional[float] = ..., negative: _Optional[float] = ..., neutral: _Optional[float] = ...) -> None: ...

class TextSpan(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class AspectTerm(_message.Message):
    __slots__ = ("aspect", "found", "label", "scores", "spans")
    ASPECT_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    aspect: str
    found: bool
    label: str
    scores: AspectScores
    spans: _containers.RepeatedCompositeFieldContainer[TextSpan]
    def __init__(self, aspect: _Optional[str] = ..., found: _Optional[bool] = ..., label: _Optional[str] = ..., scores: _Optional[_Union[AspectScores, _Mapping]] = ..., spans: _Optional[_Iterable[_Union[TextSpan, _Mapping]]] = ...) -> None: ...

class AspectCategory(_message.Message):
    __slots__ = ("category", "label", "scores")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    category: str
    label: str
    scores: AspectScores
    def __init__(self, category: _Optional[str] = ..., label: _Optional[str] = ..., scores: _Optional[_Union[AspectScores, _Mapping]] = ...) -> None: ...

class AspectSentimentResponse(_message.Message):
    __slots__ = ("mode", "aspects", "categories", "model", "degraded", "degraded_reason")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ASPECTS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    mode: str
    aspects: _containers.RepeatedCompositeFieldContainer[AspectTerm]
    categories: _containers.RepeatedCompositeFieldContainer[AspectCategory]
    model: ModelRef
    degraded: bool
    degraded_reason: str
    def __init__(self, mode: _Optional[str] = ..., aspects: _Optional[_Iterable[_Union[AspectTerm, _Mapping]]] = ..., categories: _Optional[_Iterable[_Union[AspectCategory, _Mapping]]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ...) -> None: ...
