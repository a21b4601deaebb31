"""The gRPC benchmark's pieces that need no server: framing, h2load output, percentiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import grpc_bench
from deployments.protos import ai_service_pb2 as pb

H2LOAD_SUMMARY = """
finished in 20.00s, 152.60 req/s, 30.12KB/s
requests: 3052 total, 3052 started, 3052 done, 3050 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 3050 2xx, 0 3xx, 0 4xx, 2 5xx
traffic: 602.34KB (616800) total, 12.00KB (12288) headers (space savings 90.1%)
"""


def test_grpc_frame_wraps_a_message_that_parses_back() -> None:
    framed = grpc_bench.moderation_request_bytes("hello there")
    assert framed[0] == 0
    length = int.from_bytes(framed[1:5], "big")
    assert length == len(framed) - 5
    assert pb.ModerationRequest.FromString(framed[5:]).content == "hello there"


def test_h2load_summary_counts_are_read() -> None:
    counts = grpc_bench.parse_h2load(H2LOAD_SUMMARY)
    assert counts["succeeded"] == 3050
    assert counts["failed"] == 2
    assert counts["5xx"] == 2
    assert counts["done"] == 3052


def test_h2load_without_a_summary_is_an_error() -> None:
    with pytest.raises(grpc_bench.H2LoadError, match="no summary"):
        grpc_bench.parse_h2load("connect error: refused\n")


def test_latencies_keep_only_answered_requests(tmp_path: Path) -> None:
    log = tmp_path / "h2load.log"
    log.write_text("1700\t200\t12000\n1701\t200\t30000\n1702\t503\t900\n1703\t200\t4000\n")
    assert grpc_bench.latencies_ms(log) == [12.0, 30.0, 4.0]


def test_percentile_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert grpc_bench.percentile(values, 0.5) == 50.0
    assert grpc_bench.percentile(values, 0.99) == 99.0
    assert grpc_bench.percentile([], 0.99) == 0.0


def test_grpc_command_posts_to_the_rpc_path_with_grpc_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_bench.shutil, "which", lambda name: f"/usr/bin/{name}")
    command = grpc_bench.h2load_command(
        "grpc", 9123, tmp_path / "b", "key", 32, 20.0, 5.0, tmp_path / "log"
    )
    assert command[-1] == "http://127.0.0.1:9123/AIService/ModerateContent"
    assert "content-type: application/grpc" in command
    assert "--h1" not in command
    http = grpc_bench.h2load_command(
        "http", 8123, tmp_path / "b", "key", 8, 20.0, 5.0, tmp_path / "log"
    )
    assert "--h1" in http and http[-1].endswith("/api/v1/moderation/text")


def test_a_missing_h2load_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grpc_bench.shutil, "which", lambda name: None)
    with pytest.raises(grpc_bench.H2LoadError, match="nghttp2-client"):
        grpc_bench.h2load_path()


def test_bad_options_are_refused() -> None:
    with pytest.raises(SystemExit):
        grpc_bench.parse_args(["--ingress", "nginx"])
    with pytest.raises(SystemExit):
        grpc_bench.parse_args(["--connections", "0"])


def test_ingress_entries_take_ray_wide_options() -> None:
    args = grpc_bench.parse_args(["--ingress", "proxy,haproxy+tput"])
    assert args.ingress == ["proxy", "haproxy+tput"]
    with pytest.raises(SystemExit):
        grpc_bench.parse_args(["--ingress", "haproxy+fast"])
