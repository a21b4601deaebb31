"""Smart replies: short suggested answers to a message.

`SmartReplier` retrieves replies from a curated response set (``configs/smart_replies.yaml``),
as in Gmail's Smart Reply (Kannan et al., 2016, "Smart Reply: Automated Response Suggestion
for Email"), with two simplifications forced by what we serve:

* Kannan et al. score (message, response) pairs with a model trained on conversation data.
  We have a general-purpose sentence encoder (MiniLM) instead, and "You're welcome!" is not
  *similar* to "Thank you so much!" -- it *answers* it. So each reply intent lists example
  messages it answers, and a message is matched against those examples (nearest neighbour
  over messages, which a symmetric encoder is good at). The reply inside the winning intent
  is then chosen by a small blend of its own similarity to the message (so "Yes, I'll be
  there." beats "Yes, it is." for "Are you coming tonight?").
* Their semantic intent clusters are learned; ours are the curated intents of the file.
  Diversity works the same way: at most one reply per intent, no near-duplicate texts, and a
  yes/no question gets both a "yes" and a "no" reply.

Everything in the bank (examples and replies) is embedded ONCE, batched, when the replier is
built; a request embeds only the message and its context.

`Seq2SeqReplier` offers the same `suggest` interface on top of a generative encoder-decoder
(T5 / BART style) checkpoint from a local directory.

No function here logs message text.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import yaml

from models.exceptions import InvalidInputError

__all__ = [
    "REASON_FLAGGED",
    "REASON_NO_CANDIDATE",
    "REASON_TOO_LONG",
    "ReplyBank",
    "ReplyBankError",
    "ReplyConfig",
    "ReplyDecision",
    "ReplyIntent",
    "ReplyQuery",
    "ReplySuggester",
    "Seq2SeqConfig",
    "Seq2SeqReplier",
    "SmartReplier",
    "Suggestion",
    "is_yes_no_question",
]

# Why a decision has no suggestions (the serving layer passes these through).
REASON_TOO_LONG = "message_too_long"
REASON_FLAGGED = "flagged_by_moderation"
REASON_NO_CANDIDATE = "no_confident_candidate"

BANK_FORMAT_VERSION = 1
# A suggestion is a tap-to-send chip; anything longer is not a "short reply".
MAX_REPLY_CHARS = 80
_INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_INTENT_KEYS = frozenset({"description", "examples", "replies"})

# Openers of English yes/no questions ("Are you ...?", "Can we ...?", "Don't you ...?").
# Wh-questions ("Where are you?") start with a question word instead and are not yes/no.
_AUXILIARIES = frozenset(
    """
    am is are was were do does did have has had can could will would shall should may might
    must isn't aren't wasn't weren't don't doesn't didn't haven't hasn't hadn't can't couldn't
    won't wouldn't shouldn't mightn't mustn't ain't wanna
    """.split()
)
# Leading words skipped before looking for the auxiliary ("So, are you coming?").
_LEADING_FILLERS = frozenset({"so", "and", "but", "hey", "hi", "ok", "okay", "well", "also", "oh"})
_WORD = re.compile(r"[a-z']+")

FloatMatrix = npt.NDArray[np.float32]
Encoder = Callable[[list[str]], Any]


class ReplyBankError(ValueError):
    """The response-set file is malformed; the message names the file and the bad entry."""


@dataclass(frozen=True)
class ReplyIntent:
    """One reply intent of the bank.

    Attributes:
        name: Intent name (lower_snake_case), e.g. ``welcome``.
        examples: Incoming messages this intent answers.
        replies: Short replies offered for it.
        description: Free text for people editing the file.
    """

    name: str
    examples: tuple[str, ...]
    replies: tuple[str, ...]
    description: str = ""


def _normalised_text(text: str) -> str:
    """Casefolded letters and digits only: "Sure thing!" and "sure thing." compare equal."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", folded).split())


def _string_list(value: object, where: str, max_chars: int | None) -> tuple[str, ...]:
    """Validate a non-empty list of non-empty strings at `where`."""
    if not isinstance(value, list) or not value:
        raise ReplyBankError(f"{where} must be a non-empty list of quoted strings")
    items: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ReplyBankError(
                f"{where}[{i}] is {type(item).__name__} {item!r}, not a string; quote it "
                "(YAML reads bare yes/no/on/off as booleans and 12 as a number)"
            )
        text = " ".join(item.split())
        if not text:
            raise ReplyBankError(f"{where}[{i}] is empty; remove it or write the reply")
        if max_chars is not None and len(text) > max_chars:
            raise ReplyBankError(
                f"{where}[{i}] is {len(text)} characters, over the {max_chars} allowed for a "
                "short reply; shorten it"
            )
        items.append(text)
    return tuple(items)


@dataclass(frozen=True)
class ReplyBank:
    """The curated response set: reply intents with their example messages and replies."""

    intents: tuple[ReplyIntent, ...]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        """Reject an empty bank, duplicate intents and replies duplicated across the bank."""
        if not self.intents:
            raise ReplyBankError(f"{self.source}: the bank has no intents; add at least one")
        seen_intents: set[str] = set()
        seen_replies: dict[str, str] = {}
        for intent in self.intents:
            if not _INTENT_NAME.match(intent.name):
                raise ReplyBankError(
                    f"{self.source}: intent name {intent.name!r} must be lower_snake_case "
                    "(a-z, 0-9, _; starting with a letter)"
                )
            if intent.name in seen_intents:
                raise ReplyBankError(f"{self.source}: intent {intent.name!r} is defined twice")
            seen_intents.add(intent.name)
            if not intent.examples or not intent.replies:
                raise ReplyBankError(
                    f"{self.source}: intents.{intent.name} needs at least one example and one reply"
                )
            for i, reply in enumerate(intent.replies):
                key = _normalised_text(reply)
                where = f"intents.{intent.name}.replies[{i}]"
                if not key:
                    raise ReplyBankError(
                        f"{self.source}: {where} has no letters or digits; write a reply"
                    )
                if key in seen_replies:
                    # One text in two places would be suggested twice and blur the intents.
                    raise ReplyBankError(
                        f"{self.source}: {where} {reply!r} duplicates {seen_replies[key]}; "
                        "keep it in one intent only"
                    )
                seen_replies[key] = where

    @classmethod
    def from_mapping(cls, data: object, source: str = "<memory>") -> ReplyBank:
        """Build a bank from parsed YAML (see the header of configs/smart_replies.yaml).

        Raises:
            ReplyBankError: The structure is wrong; the message names the bad entry.
        """
        if not isinstance(data, dict):
            raise ReplyBankError(
                f"{source}: top level must be a mapping with 'version' and 'intents', "
                f"got {type(data).__name__}"
            )
        unknown = set(map(str, data)) - {"version", "intents"}
        if unknown:
            raise ReplyBankError(
                f"{source}: unknown top-level key(s) {sorted(unknown)}; only 'version' and "
                "'intents' are allowed"
            )
        version = data.get("version")
        if version != BANK_FORMAT_VERSION:
            raise ReplyBankError(
                f"{source}: version is {version!r}; this loader reads version "
                f"{BANK_FORMAT_VERSION} (add 'version: {BANK_FORMAT_VERSION}')"
            )
        raw_intents = data.get("intents")
        if not isinstance(raw_intents, dict) or not raw_intents:
            raise ReplyBankError(
                f"{source}: 'intents' must be a non-empty mapping of intent name -> entry"
            )
        intents: list[ReplyIntent] = []
        for name, entry in raw_intents.items():
            if not isinstance(name, str):
                raise ReplyBankError(
                    f"{source}: intent name {name!r} is {type(name).__name__}, not a string; "
                    'quote it (YAML reads bare yes/no as booleans: write "yes":)'
                )
            where = f"intents.{name}"
            if not isinstance(entry, dict):
                raise ReplyBankError(
                    f"{source}: {where} must be a mapping with 'examples' and 'replies'"
                )
            extra = set(map(str, entry)) - _INTENT_KEYS
            if extra:
                raise ReplyBankError(
                    f"{source}: {where} has unknown key(s) {sorted(extra)}; allowed: "
                    f"{sorted(_INTENT_KEYS)}"
                )
            description = entry.get("description", "")
            if not isinstance(description, str):
                raise ReplyBankError(f"{source}: {where}.description must be a string")
            try:
                examples = _string_list(entry.get("examples"), f"{where}.examples", None)
                replies = _string_list(entry.get("replies"), f"{where}.replies", MAX_REPLY_CHARS)
            except ReplyBankError as exc:
                raise ReplyBankError(f"{source}: {exc}") from None
            intents.append(ReplyIntent(name, examples, replies, description))
        return cls(tuple(intents), source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplyBank:
        """Read and validate a response-set YAML file.

        Raises:
            FileNotFoundError: `path` does not exist.
            ReplyBankError: The YAML does not parse or its structure is wrong.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(
                f"reply bank {str(file)!r} does not exist; point the setting at a YAML file "
                "such as configs/smart_replies.yaml"
            )
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ReplyBankError(f"{file}: not valid YAML ({exc}); fix the syntax") from exc
        return cls.from_mapping(data, str(file))

    def intent(self, name: str) -> ReplyIntent | None:
        """Return the intent called `name`, or None."""
        return next((i for i in self.intents if i.name == name), None)

    @property
    def reply_count(self) -> int:
        """Number of replies across all intents."""
        return sum(len(i.replies) for i in self.intents)


@dataclass(frozen=True)
class Suggestion:
    """One suggested reply: its text, ranking score and intent (None for generated ones)."""

    text: str
    score: float
    intent: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return ``{"text", "score", "intent"}``."""
        return {"text": self.text, "score": self.score, "intent": self.intent}


@dataclass(frozen=True)
class ReplyDecision:
    """Suggestions for one message, or the reason there are none.

    Attributes:
        suggestions: Best first; empty when `reason` is set.
        reason: ``message_too_long``, ``flagged_by_moderation`` or
            ``no_confident_candidate`` when there are no suggestions, else None.
        yes_no_question: Whether the message was read as a yes/no question.
    """

    suggestions: tuple[Suggestion, ...]
    reason: str | None = None
    yes_no_question: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return ``{"suggestions": [...], "reason": ...}`` as JSON-serialisable types."""
        return {
            "suggestions": [s.as_dict() for s in self.suggestions],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReplyQuery:
    """A message to suggest replies to, as a reply model receives it.

    Attributes:
        message: The message being answered.
        context: Earlier messages of the conversation, oldest first.
        limit: Most suggestions.
        flagged_by_moderation: The message was flagged: the decision has no suggestions.
    """

    message: str
    context: tuple[str, ...] = ()
    limit: int = 3
    flagged_by_moderation: bool = False


class ReplySuggester(Protocol):
    """What the serving layer needs from a reply model (retrieval or generative)."""

    def suggest(
        self,
        message: str,
        context: Sequence[str] | None = None,
        limit: int = 3,
        flagged_by_moderation: bool = False,
    ) -> ReplyDecision:
        """Return up to `limit` replies to `message`, or the reason for none."""
        ...


def _require_positive(config: object, names: Sequence[str]) -> None:
    """Raise naming the first of `config`'s fields `names` that is below 1."""
    for name in names:
        value = getattr(config, name)
        if value < 1:
            raise ValueError(f"{type(config).__name__}.{name}={value} must be >= 1")


@dataclass(frozen=True)
class ReplyConfig:
    """Tuning of `SmartReplier` (MiniLM cosine similarities are in [-1, 1]).

    Attributes:
        max_message_chars: Longer messages get no suggestions (short replies fit short
            messages; Smart Reply also only triggers on short emails).
        min_similarity: An intent is a candidate only if the message's best cosine
            similarity to one of its examples reaches this.
        context_weight: Weight of the mean context embedding in the query (0 = ignore).
        max_context_messages: Only the most recent context messages are used.
        max_limit: Largest `limit` a caller may ask for.
        reply_text_weight: Within the score, weight of the reply's own similarity to the
            query (the rest is the intent's example similarity).
        near_duplicate_similarity: A reply this similar to an already chosen one is skipped.
        yes_intent / no_intent: Intents offered together for yes/no questions; None turns the
            pairing off.
        encode_batch_size: Texts per encoder call when embedding the bank.
    """

    max_message_chars: int = 500
    # Measured with all-MiniLM-L6-v2 on this bank: gibberish and off-domain text peak at
    # ~0.15-0.28 against the examples, ordinary chat messages at 0.4-1.0.
    min_similarity: float = 0.4
    context_weight: float = 0.2
    max_context_messages: int = 3
    max_limit: int = 5
    reply_text_weight: float = 0.2
    near_duplicate_similarity: float = 0.9
    yes_intent: str | None = "yes"
    no_intent: str | None = "no"
    encode_batch_size: int = 64

    def __post_init__(self) -> None:
        """Reject out-of-range values with the field name and the accepted range."""
        _require_positive(
            self, ("max_message_chars", "max_context_messages", "max_limit", "encode_batch_size")
        )
        for name, fraction in (
            ("context_weight", self.context_weight),
            ("reply_text_weight", self.reply_text_weight),
        ):
            if not 0.0 <= fraction < 1.0:
                raise ValueError(f"ReplyConfig.{name}={fraction} must be in [0, 1)")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(
                f"ReplyConfig.min_similarity={self.min_similarity} must be a cosine "
                "similarity in [-1, 1]"
            )
        if not 0.0 < self.near_duplicate_similarity <= 1.0:
            raise ValueError(
                f"ReplyConfig.near_duplicate_similarity={self.near_duplicate_similarity} "
                "must be in (0, 1]"
            )


def is_yes_no_question(message: str) -> bool:
    """Heuristic: ends with "?" and opens with an auxiliary verb ("Are you coming?").

    A few leading fillers are skipped ("So, can we go?"). Wh-questions ("Where are you?")
    are not yes/no questions.
    """
    stripped = message.strip()
    if not stripped.endswith("?"):
        return False
    words = _WORD.findall(stripped.casefold().replace("\u2019", "'"))
    for word in words[:3]:
        if word in _AUXILIARIES:
            return True
        if word not in _LEADING_FILLERS:
            return False
    return False


class _Screened(NamedTuple):
    """A valid request that may get suggestions: message, context texts, limit, and whether
    the message is a yes/no question."""

    message: str
    context: list[str]
    limit: int
    yes_no: bool


def _screen(
    message: object,
    context: Sequence[str] | None,
    limit: object,
    flagged_by_moderation: bool,
    config: ReplyConfig | Seq2SeqConfig,
) -> _Screened | ReplyDecision:
    """Validate a request; the decision when it gets no suggestions whatever the model says
    (flagged, too long), else the request for the model to answer.

    Raises:
        InvalidInputError: Empty message, non-string context item or bad `limit`.
    """
    if not isinstance(message, str) or not message.strip():
        raise InvalidInputError("message", "must be a non-empty string")
    max_limit = config.max_limit
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_limit:
        raise InvalidInputError("limit", f"is {limit!r}; use an integer from 1 to {max_limit}")
    texts: list[str] = []
    for i, item in enumerate(context or ()):
        if not isinstance(item, str):
            raise InvalidInputError(f"context[{i}]", "must be a string")
        if item.strip():
            texts.append(item)
    if flagged_by_moderation:
        return ReplyDecision((), REASON_FLAGGED)
    if len(message) > config.max_message_chars:
        return ReplyDecision((), REASON_TOO_LONG)
    return _Screened(message, texts, limit, is_yes_no_question(message))


def _unit_rows(matrix: FloatMatrix) -> FloatMatrix:
    """L2-normalise rows (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: FloatMatrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit


class SmartReplier:
    """Retrieval Smart Reply over a `ReplyBank` with an injected sentence encoder."""

    def __init__(self, bank: ReplyBank, encode: Encoder, config: ReplyConfig | None = None) -> None:
        """Embed the bank's examples and replies once (batched).

        Args:
            bank: The curated response set.
            encode: Maps a list of texts to an ``(n, d)`` array of sentence embeddings
                (in production the MiniLM node: L2-normalised 384-d vectors). Rows are
                re-normalised here, so an un-normalised encoder also works.
            config: Thresholds and limits; defaults suit MiniLM.

        Raises:
            ValueError: A configured yes/no intent is missing from the bank, or the encoder
                returns the wrong shape.
        """
        self.bank = bank
        self.config = config or ReplyConfig()
        self._encode = encode
        for role, name in (
            ("yes_intent", self.config.yes_intent),
            ("no_intent", self.config.no_intent),
        ):
            if name is not None and bank.intent(name) is None:
                raise ValueError(
                    f"ReplyConfig.{role}={name!r} is not an intent of {bank.source}; add it "
                    f"to the bank or set {role}=None"
                )
        self._intent_names = tuple(i.name for i in bank.intents)
        example_texts = [e for i in bank.intents for e in i.examples]
        self._example_intent = np.array(
            [k for k, i in enumerate(bank.intents) for _ in i.examples], dtype=np.int64
        )
        self._reply_texts = [r for i in bank.intents for r in i.replies]
        self._reply_intent = np.array(
            [k for k, i in enumerate(bank.intents) for _ in i.replies], dtype=np.int64
        )
        embedded = self._embed(example_texts + self._reply_texts)
        self._dim = embedded.shape[1]
        self._example_vectors = embedded[: len(example_texts)]
        self._reply_vectors = embedded[len(example_texts) :]

    def _embed(self, texts: list[str], expect_dim: int | None = None) -> FloatMatrix:
        """Encode in batches and return unit rows; checks the encoder's output shape."""
        batch = self.config.encode_batch_size
        parts: list[FloatMatrix] = []
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            vectors = np.asarray(self._encode(chunk), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(chunk):
                raise ValueError(
                    f"encoder returned shape {vectors.shape} for {len(chunk)} texts; it must "
                    "return one embedding row per text, shape (n, d)"
                )
            if expect_dim is not None and vectors.shape[1] != expect_dim:
                raise ValueError(
                    f"encoder returned {vectors.shape[1]}-d vectors but the bank was embedded "
                    f"with {expect_dim}-d ones; use the same encoder for both"
                )
            parts.append(vectors)
        return _unit_rows(np.concatenate(parts, axis=0))

    def _query(self, message: str, context: list[str]) -> npt.NDArray[np.float32]:
        """Embed the message, blending in the mean of recent context with a small weight."""
        recent = context[-self.config.max_context_messages :] if context else []
        limit_chars = self.config.max_message_chars
        vectors = self._embed([message] + [c[:limit_chars] for c in recent], self._dim)
        query = vectors[0]
        weight = self.config.context_weight
        if recent and weight > 0:
            query = (1.0 - weight) * query + weight * vectors[1:].mean(axis=0)
        norm = float(np.linalg.norm(query))
        unit: npt.NDArray[np.float32] = query / norm if norm > 0 else query
        return unit

    def suggest(
        self,
        message: str,
        context: Sequence[str] | None = None,
        limit: int = 3,
        flagged_by_moderation: bool = False,
    ) -> ReplyDecision:
        """Return up to `limit` diverse replies to `message`, or why there are none.

        Args:
            message: The message being replied to.
            context: Earlier messages of the conversation, oldest first (optional).
            limit: 1..``max_limit`` suggestions.
            flagged_by_moderation: The moderation node flagged the message: suggest nothing
                (a cheerful canned reply to abuse is worse than none).

        A yes/no question with ``limit >= 2`` always gets one "yes" and one "no" reply;
        with ``limit == 1`` only the best-ranked candidate is returned.

        Raises:
            InvalidInputError: Empty message, non-string context item or bad `limit`.
        """
        screened = _screen(message, context, limit, flagged_by_moderation, self.config)
        if isinstance(screened, ReplyDecision):
            return screened
        message, context_texts, limit, yes_no = screened
        query = self._query(message, context_texts)

        # Intent relevance: best similarity to any example message of the intent.
        example_sims = self._example_vectors @ query
        intent_sims = np.full(len(self._intent_names), -1.0, dtype=np.float32)
        np.maximum.at(intent_sims, self._example_intent, example_sims)
        reply_sims = self._reply_vectors @ query
        w = self.config.reply_text_weight
        reply_scores = (1.0 - w) * intent_sims[self._reply_intent] + w * reply_sims

        # Best reply per intent (diversity rule 1: at most one reply per intent).
        best_reply: dict[int, int] = {}
        for r in np.argsort(-reply_scores, kind="stable"):
            best_reply.setdefault(int(self._reply_intent[r]), int(r))
        candidates = [k for k in best_reply if intent_sims[k] >= self.config.min_similarity]
        forced: list[int] = []
        if yes_no and limit >= 2:
            # A yes/no question deserves both answers whatever their rank; the user, not
            # the ranker, knows which is true.
            for name in (self.config.yes_intent, self.config.no_intent):
                if name is not None:
                    forced.append(self._intent_names.index(name))
        order = forced + [k for k in candidates if k not in forced]
        if not order:
            return ReplyDecision((), REASON_NO_CANDIDATE, yes_no)

        chosen: list[int] = []
        chosen_keys: set[str] = set()
        for k in order:
            r = best_reply[k]
            key = _normalised_text(self._reply_texts[r])
            if key in chosen_keys:
                continue
            if (
                chosen
                and float(np.max(self._reply_vectors[chosen] @ self._reply_vectors[r]))
                >= self.config.near_duplicate_similarity
            ):
                continue  # diversity rule 2: no paraphrase of a reply already chosen
            chosen.append(r)
            chosen_keys.add(key)
            if len(chosen) == limit:
                break
        suggestions = sorted(
            (
                Suggestion(
                    text=self._reply_texts[r],
                    score=round(float(reply_scores[r]), 4),
                    intent=self._intent_names[int(self._reply_intent[r])],
                )
                for r in chosen
            ),
            key=lambda s: -s.score,
        )
        return ReplyDecision(tuple(suggestions), None, yes_no)


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Tuning of `Seq2SeqReplier`.

    Attributes:
        max_message_chars: Longer messages get no suggestions.
        max_context_messages: Only the most recent context messages go into the prompt.
        max_input_tokens: Prompt truncation (from the left, so the message itself survives).
        max_new_tokens: Longest generated reply, in tokens.
        num_beams: Beam width; the beams are the candidate replies (>= ``max_limit``).
        max_limit: Largest `limit` a caller may ask for.
        min_score: Candidates whose length-normalised sequence probability is below this
            are dropped (0 keeps everything).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    """

    max_message_chars: int = 500
    max_context_messages: int = 3
    max_input_tokens: int = 256
    max_new_tokens: int = 16
    num_beams: int = 8
    max_limit: int = 5
    min_score: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        """Reject out-of-range values with the field name."""
        _require_positive(
            self,
            (
                "max_message_chars",
                "max_context_messages",
                "max_input_tokens",
                "max_new_tokens",
                "max_limit",
            ),
        )
        if self.num_beams < self.max_limit:
            raise ValueError(
                f"Seq2SeqConfig.num_beams={self.num_beams} is below max_limit="
                f"{self.max_limit}; each suggestion is one beam, so raise num_beams"
            )
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"Seq2SeqConfig.min_score={self.min_score} must be in [0, 1]")


@dataclass
class Seq2SeqReplier:
    """Generative replies from a local seq2seq checkpoint, behind `ReplySuggester`.

    Holds a loaded ``AutoModelForSeq2SeqLM`` and its tokenizer; `load` builds one.
    """

    model: Any
    tokenizer: Any
    config: Seq2SeqConfig
    name: str

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], config: Seq2SeqConfig | None = None
    ) -> Seq2SeqReplier:
        """Load an ``AutoModelForSeq2SeqLM`` and its tokenizer from a local directory.

        Raises:
            FileNotFoundError: `path` is not a local checkpoint directory.
            ValueError: The tokenizer has no pad or end-of-sequence token.
        """
        # Imported here: the ingress imports this module for its reason codes, and must not
        # pay for torch and transformers, which only a generative replier needs.
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from models.device import require_checkpoint_dir, resolve_device

        cfg = config or Seq2SeqConfig()
        directory = require_checkpoint_dir(path)
        device = resolve_device(cfg.device)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(
                f"tokenizer in {str(directory)!r} has no pad or eos token; save it with "
                "pad_token and eos_token set"
            )
        tokenizer.truncation_side = "left"
        model = AutoModelForSeq2SeqLM.from_pretrained(str(directory), local_files_only=True)
        model.to(device)
        model.eval()
        return cls(model, tokenizer, cfg, directory.name)

    def _prompt(self, message: str, context: list[str]) -> str:
        """Recent context then the message, so left truncation drops the oldest text."""
        recent = context[-self.config.max_context_messages :] if context else []
        if not recent:
            return message
        return "context: " + " | ".join(recent) + " message: " + message

    def suggest(
        self,
        message: str,
        context: Sequence[str] | None = None,
        limit: int = 3,
        flagged_by_moderation: bool = False,
    ) -> ReplyDecision:
        """Generate up to `limit` distinct replies by beam search (same contract as
        `SmartReplier.suggest`; suggestions carry ``intent=None``).

        Raises:
            InvalidInputError: Empty message, non-string context item or bad `limit`.
        """
        import torch

        screened = _screen(message, context, limit, flagged_by_moderation, self.config)
        if isinstance(screened, ReplyDecision):
            return screened
        message, context_texts, limit, yes_no = screened
        inputs = self.tokenizer(
            [self._prompt(message, context_texts)],
            return_tensors="pt",
            truncation=True,
            max_length=self.config.max_input_tokens,
        ).to(self.model.device)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                num_beams=self.config.num_beams,
                num_return_sequences=self.config.num_beams,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        texts = self.tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
        scores = getattr(out, "sequences_scores", None)
        chosen: list[Suggestion] = []
        seen: set[str] = set()
        for i, raw in enumerate(texts):
            text = " ".join(str(raw).split())
            key = _normalised_text(text)
            if not key or key in seen:
                continue  # beams often differ only in punctuation or are empty
            # sequences_scores are length-normalised log-probabilities.
            score = math.exp(float(scores[i])) if scores is not None else 0.0
            if score < self.config.min_score:
                continue
            seen.add(key)
            chosen.append(
                Suggestion(text=text[:MAX_REPLY_CHARS], score=round(score, 4), intent=None)
            )
            if len(chosen) == limit:
                break
        if not chosen:
            return ReplyDecision((), REASON_NO_CANDIDATE, yes_no)
        return ReplyDecision(tuple(chosen), None, yes_no)
