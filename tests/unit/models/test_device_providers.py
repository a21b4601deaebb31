"""onnxruntime's provider choice and the CUDA status a GPU replica reports, on this CPU box
(the CPU builds of torch and onnxruntime: no CUDA provider, no CUDA device)."""

from __future__ import annotations

import pytest

from models.device import CPU_PROVIDER, cuda_status, onnx_providers, onnx_session_device
from models.nsfw import NudeNetDetector


def test_auto_falls_back_to_the_cpu_provider_without_cuda() -> None:
    assert onnx_providers("auto") == [CPU_PROVIDER]
    assert onnx_providers(" CPU ") == [CPU_PROVIDER]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "no CUDAExecutionProvider"),
        ("cuda:1", "no CUDAExecutionProvider"),
        ("cuda:x", "index must be an integer"),
        ("tpu", "not supported"),
    ],
)
def test_unservable_devices_are_refused_naming_the_fix(device: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        onnx_providers(device)


def test_cuda_provider_is_first_when_onnxruntime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert onnx_providers("auto") == [("CUDAExecutionProvider", {"device_id": "0"}), CPU_PROVIDER]
    assert onnx_providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": "1"})
    assert "onnxruntime has CUDAExecutionProvider" in cuda_status()


def test_a_session_reports_the_device_it_got() -> None:
    detector = NudeNetDetector.load()  # the shipped 320n.onnx, "auto"
    assert detector.info.device == "cpu"
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        NudeNetDetector.load(device="cuda")

    class CudaSession:
        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_provider_options(self) -> dict[str, dict[str, str]]:
            return {"CUDAExecutionProvider": {"device_id": "0"}}

    assert onnx_session_device(CudaSession()) == "cuda:0"


def test_cuda_status_says_why_there_is_no_cuda_here() -> None:
    status = cuda_status()
    assert "torch" in status and "CPU build" in status
    assert "onnxruntime has no CUDAExecutionProvider" in status
