"""ONNX backend of the sentence encoder: export parity, int8 gate, refusal of ungated artifacts.

The bundled all-MiniLM-L6-v2 is exported once per module (fp32 and int8, a few seconds each),
so the real exporter, quantiser and gate run here, on a small fixed sample.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from configs.recommender import EmbeddingModelSpec
from models.embeddings import EMBEDDING_DIM, MiniLMEmbedder, load_embedder
from models.onnx_backend import (
    GATE_FILE,
    MODEL_FILE,
    ArtifactNotServableError,
    ArtifactOrigin,
    CosineGate,
    GateReport,
    OnnxEmbedder,
    check_servable,
    cosine_rows,
    evaluate_gate,
    read_gate_report,
    write_gate_report,
)
from pipelines.export_onnx import DEFAULT_SAMPLE_FILES, export_and_gate, gate_sample

_SUBJECTS = ("the new park", "my cat", "this phone", "the match last night", "our trip")
_VERDICTS = (
    "was wonderful",
    "is awful and I hate it",
    "looks fine I guess",
    "made my whole week, thanks everyone!",
    "broke after two days",
    "is the best thing that happened to this city in years",
)
# 30 texts of different lengths, so batches are padded and the mask matters.
TEXTS = [f"{s} {v}" for s in _SUBJECTS for v in _VERDICTS]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return MiniLMEmbedder.load(device="cpu").embed(TEXTS)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, GateReport]]:
    """fp32 and int8 artifacts of the bundled MiniLM, gated on TEXTS."""
    from models.embeddings import default_model_dir

    root = tmp_path_factory.mktemp("onnx")
    built = {}
    for kind in ("fp32", "int8"):
        out = root / kind
        report = export_and_gate(
            default_model_dir(),
            out,
            TEXTS,
            quantize=kind == "int8",
            gate=CosineGate(min_texts=len(TEXTS)),
        )
        built[kind] = (out, report)
    return built


def test_fp32_export_matches_torch_and_is_servable(
    artifacts: dict[str, tuple[Path, GateReport]], torch_vectors: np.ndarray
) -> None:
    directory, report = artifacts["fp32"]
    model = OnnxEmbedder.load(directory)
    vectors = model.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), EMBEDDING_DIM)
    assert cosine_rows(torch_vectors, vectors).min() > 0.999
    assert report.servable and not report.quantized and report.reasons == []
    assert report.num_texts == len(TEXTS)
    assert model.info.name == "all-MiniLM-L6-v2-onnx-fp32"
    assert model.info.version == report.model_sha256[:12]


def test_vectors_do_not_depend_on_batch_padding(
    artifacts: dict[str, tuple[Path, GateReport]],
) -> None:
    # The shortest text alone (no padding) and inside a batch with the longest (padded):
    # a mask frozen at export, or pooling over pad tokens, would change its vector.
    model = OnnxEmbedder.load(artifacts["fp32"][0])
    short = min(TEXTS, key=len)
    alone = model.embed([short])
    padded = model.embed([max(TEXTS, key=len), short])[1:]
    assert cosine_rows(alone, padded)[0] > 0.99999


def test_load_embedder_onnx_keeps_the_predict_batch_contract(
    artifacts: dict[str, tuple[Path, GateReport]], torch_vectors: np.ndarray
) -> None:
    model = load_embedder("onnx", onnx_path=artifacts["fp32"][0], onnx_threads=1)
    rows = model.predict_batch(TEXTS[:3])
    assert len(rows) == 3
    assert all(isinstance(row, list) and len(row) == EMBEDDING_DIM for row in rows)
    assert all(isinstance(value, float) for value in rows[0])
    np.testing.assert_allclose(np.linalg.norm(np.asarray(rows), axis=1), 1.0, atol=1e-5)
    assert cosine_rows(torch_vectors[:3], np.asarray(rows, dtype=np.float32)).min() > 0.999
    assert model.predict_batch([]) == []


def test_int8_is_smaller_close_but_not_identical_and_gated_as_computed(
    artifacts: dict[str, tuple[Path, GateReport]], torch_vectors: np.ndarray
) -> None:
    directory, report = artifacts["int8"]
    fp32_size = (artifacts["fp32"][0] / MODEL_FILE).stat().st_size
    assert (directory / MODEL_FILE).stat().st_size < fp32_size / 2
    assert report.quantized and report.quantization is not None
    assert report.quantization["per_channel"] is True
    assert len(report.quantization["fp32_nodes"]) == 6  # one FFN output per MiniLM layer
    vectors = OnnxEmbedder.load_for_gate(directory).embed(TEXTS)
    cosines = cosine_rows(torch_vectors, vectors)
    assert report.mean_cosine == pytest.approx(float(cosines.mean()), abs=1e-6)
    assert report.min_cosine == pytest.approx(float(cosines.min()), abs=1e-6)
    assert cosines.max() < 1.0 - 1e-6  # it really is quantised
    passes = report.mean_cosine >= report.min_mean_cosine and (
        report.min_cosine >= report.min_text_cosine
    )
    assert report.servable is passes
    if report.servable:
        assert OnnxEmbedder.load(directory).info.name.endswith("-onnx-int8")
    else:
        with pytest.raises(ArtifactNotServableError):
            OnnxEmbedder.load(directory)


def test_failed_gate_is_refused_at_load(
    artifacts: dict[str, tuple[Path, GateReport]], torch_vectors: np.ndarray, tmp_path: Path
) -> None:
    # An impossible bar (exactly fp32) makes the int8 model fail; the node must refuse it.
    copy = tmp_path / "strict"
    shutil.copytree(artifacts["int8"][0], copy)
    passed = artifacts["int8"][1]
    vectors = OnnxEmbedder.load_for_gate(copy).embed(TEXTS)
    report = evaluate_gate(
        torch_vectors,
        vectors,
        model_path=copy / MODEL_FILE,
        origin=ArtifactOrigin(
            sample_sha256=passed.sample_sha256,
            source_checkpoint=passed.source_checkpoint,
            source_version=passed.source_version,
            name=passed.name,
        ),
        quantization=passed.quantization,
        gate=CosineGate(min_mean_cosine=1.0, min_texts=len(TEXTS)),
    )
    assert not report.servable
    assert any("mean cosine" in reason for reason in report.reasons)
    write_gate_report(copy, report)
    assert read_gate_report(copy).servable is False
    with pytest.raises(ArtifactNotServableError, match="failed its accuracy gate"):
        load_embedder("onnx", onnx_path=copy)


def test_too_small_sample_or_one_bad_text_fails_the_gate(tmp_path: Path) -> None:
    model_path = tmp_path / MODEL_FILE
    model_path.write_bytes(b"stand-in model bytes")
    reference = np.eye(4, dtype=np.float32)
    close = reference.copy()
    close[3] = [0.0, 0.3, 0.0, 1.0]  # cosine 0.958 for this row, the others 1.0
    origin = ArtifactOrigin(sample_sha256="s", source_checkpoint="c", source_version="v", name="n")
    few = evaluate_gate(reference, reference, model_path=model_path, origin=origin)
    assert not few.servable
    assert few.reasons == ["sample has 4 texts; the gate needs at least 200"]
    one_bad = evaluate_gate(
        reference,
        close,
        model_path=model_path,
        origin=origin,
        gate=CosineGate(min_mean_cosine=0.98, min_text_cosine=0.96, min_texts=4),
    )
    assert one_bad.mean_cosine > 0.98
    assert not one_bad.servable
    assert one_bad.reasons == ["lowest cosine to fp32 0.9578 is below 0.96"]
    ok = evaluate_gate(
        reference,
        close,
        model_path=model_path,
        origin=origin,
        gate=CosineGate(min_mean_cosine=0.98, min_texts=4),
    )
    assert ok.servable and ok.reasons == []


def test_missing_or_stale_gate_report_is_refused(
    artifacts: dict[str, tuple[Path, GateReport]], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(artifacts["fp32"][0], copy)
    (copy / GATE_FILE).unlink()
    with pytest.raises(ArtifactNotServableError, match="gate.json' is missing"):
        OnnxEmbedder.load(copy)
    # A passing report next to other model bytes (the int8 file copied in) is not a pass.
    shutil.copy2(artifacts["fp32"][0] / GATE_FILE, copy / GATE_FILE)
    shutil.copy2(artifacts["int8"][0] / MODEL_FILE, copy / MODEL_FILE)
    with pytest.raises(ArtifactNotServableError, match="not the file its gate report"):
        check_servable(copy)
    (copy / GATE_FILE).write_text(json.dumps({"servable": True}), encoding="utf-8")
    with pytest.raises(ArtifactNotServableError, match="not a gate report"):
        check_servable(copy)
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        OnnxEmbedder.load(tmp_path)


def test_embedding_spec_backend_fields_are_checked() -> None:
    spec = EmbeddingModelSpec.model_validate(
        {"backend": "onnx", "onnx_path": "/a", "device": "cpu"}
    )
    assert spec.backend == "onnx" and spec.onnx_threads == 0
    assert EmbeddingModelSpec().backend == "torch"
    with pytest.raises(ValidationError, match="onnx_path is empty"):
        EmbeddingModelSpec.model_validate({"backend": "onnx"})
    # onnxruntime's CUDA provider serves a CUDA device (checked when the model loads).
    cuda = {"backend": "onnx", "onnx_path": "/a", "device": "cuda"}
    assert EmbeddingModelSpec.model_validate(cuda).device == "cuda"
    with pytest.raises(ValidationError, match="would be ignored"):
        EmbeddingModelSpec.model_validate({"onnx_path": "/a"})
    with pytest.raises(ValidationError):
        EmbeddingModelSpec.model_validate({"backend": "tensorrt"})


@pytest.mark.skipif(
    not all(path.is_file() for path in DEFAULT_SAMPLE_FILES),
    reason="the gate's default sample needs ../shared/data (see its README)",
)
def test_default_gate_sample_is_fixed_and_large_enough() -> None:
    first = gate_sample(list(DEFAULT_SAMPLE_FILES), per_file=100, seed=0)
    assert len(first) == 200
    assert first == gate_sample(list(DEFAULT_SAMPLE_FILES), per_file=100, seed=0)
    assert first != gate_sample(list(DEFAULT_SAMPLE_FILES), per_file=100, seed=1)
