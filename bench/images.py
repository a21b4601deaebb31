"""Images per second for NSFW moderation and tagging: the service vs the models in one process.

    .venv/bin/python -m bench.images                 # ~2 min on 2 cores
    .venv/bin/python -m bench.images --duration-s 3  # quicker, noisier

Direct: ``predict_batch`` on decoded arrays in this process, batches of 1 and of 16.
Service: a private Ray instance (its own temp dir, loopback port) running the graph with the
image nodes; "batch 1" is one client sending one image at a time, "batch 16" is 16 concurrent
clients, so the node's ``@serve.batch`` can form batches of up to 16. Requests carry the image
as base64 JSON, so the service figure includes the body, base64 and JPEG decoding in the
ingress and the handle hop, which the direct figure does not. Every cell is bounded by
``--duration-s``. Prints a Markdown table; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

import cv2
import httpx
import numpy as np

from models.images import decode_image, encode_jpeg
from models.nsfw import NudeNetDetector
from models.tagger import ImageTagModel

BENCH_KEY = "bench-images-key"
IMAGE_COUNT = 32
WIDTH_PX, HEIGHT_PX = 640, 480


def make_images(count: int = IMAGE_COUNT) -> list[bytes]:
    """JPEG photos-to-be: noise backgrounds with drawn skin-toned shapes and dark ovals."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 255, (HEIGHT_PX, WIDTH_PX, 3), dtype=np.uint8)
        pixels = cv2.GaussianBlur(pixels, (31, 31), 10)
        for _shape in range(3):
            centre = (int(rng.integers(80, 560)), int(rng.integers(80, 400)))
            axes = (int(rng.integers(30, 120)), int(rng.integers(30, 120)))
            colour = tuple(int(c) for c in rng.integers(60, 230, 3))
            cv2.ellipse(pixels, centre, axes, 0, 0, 360, colour, -1)
        images.append(encode_jpeg(pixels, quality=85))
    return images


def time_direct(
    predict: Callable[[list[Any]], Any], items: list[Any], batch: int, duration_s: float
) -> float:
    """Items per second of ``predict`` over batches of ``batch`` for about ``duration_s``."""
    predict(items[:batch])  # warm-up (onnxruntime and OpenCV allocate on first call)
    done, position = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s:
        chunk = [items[(position + i) % len(items)] for i in range(batch)]
        predict(chunk)
        done += batch
        position += batch
    return done / (time.perf_counter() - started)


async def time_service(
    base_url: str, route: str, bodies: list[dict[str, Any]], clients: int, duration_s: float
) -> float:
    """Requests per second with ``clients`` concurrent keep-alive clients for ``duration_s``."""
    done = 0
    deadline = time.perf_counter() + duration_s

    async def client(offset: int, http: httpx.AsyncClient) -> None:
        nonlocal done
        position = offset
        while time.perf_counter() < deadline:
            response = await http.post(route, json=bodies[position % len(bodies)])
            response.raise_for_status()
            done += 1
            position += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"X-API-Key": BENCH_KEY}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60, trust_env=False
    ) as http:
        await http.post(route, json=bodies[0])  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        return done / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_graph(
    app_args: dict[str, Any], options: dict[str, Any], temp_prefix: str
) -> tuple[str, Callable[[], None]]:
    """A private Ray instance running the graph of `app_args` (deployment `options` applied);
    returns its URL and a stop function. bench.objects starts its graph with it too."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from configs.app import AppArgs
    from deployments.app import build_graph

    ray.init(
        num_cpus=os.cpu_count() or 2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=tempfile.mkdtemp(prefix=temp_prefix, dir="/tmp"),
        runtime_env={
            "env_vars": {
                "API_KEYS": BENCH_KEY,
                "SOCIALPLAY_DEV_MODE": "0",
                "SOCIALPLAY_HASH_SECRET": "bench-hash-secret-not-private",
            }
        },
    )
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_graph(AppArgs.model_validate(app_args), options),
        route_prefix="/",
        logging_config={"enable_access_log": False},
    )

    def stop() -> None:
        serve.shutdown()
        ray.shutdown()

    return f"http://127.0.0.1:{port}", stop


def start_service(num_threads: int) -> tuple[str, Callable[[], None]]:
    """A private Ray instance with the image graph; returns its URL and a stop function."""
    batching = {"batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}}
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    options = {
        "Ingress": small,
        "TextModeration": small,
        "Sentiment": small,
        "NsfwDetector": {**small, "user_config": batching},
        "ImageTagModel": {**small, "user_config": batching},
    }
    app_args = {
        "nsfw_model": {"enabled": True, "num_threads": num_threads},
        "tagger_model": {"enabled": True},
    }
    return start_graph(app_args, options, "sp-bench-img-")


def main() -> None:
    """Run every cell and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=8.0, help="Seconds per cell.")
    parser.add_argument(
        "--num-threads", type=int, default=1, help="onnxruntime threads (direct and node)."
    )
    options = parser.parse_args()
    files = make_images()
    arrays = [decode_image(data).pixels for data in files]
    nsfw = NudeNetDetector.load(num_threads=options.num_threads)
    tagger = ImageTagModel.load(None)
    rows: list[tuple[str, str, int, float]] = []
    for batch in (1, 16):
        rows.append(
            (
                "NSFW",
                "direct",
                batch,
                time_direct(nsfw.predict_batch, arrays, batch, options.duration_s),
            )
        )
        rows.append(
            (
                "tags (faces)",
                "direct",
                batch,
                time_direct(tagger.predict_batch, arrays, batch, options.duration_s),
            )
        )
    base_url, stop = start_service(options.num_threads)
    try:
        bodies = [{"image_base64": base64.b64encode(data).decode()} for data in files]
        for route, name in (
            ("/api/v1/moderation/image", "NSFW"),
            ("/api/v1/image/tags", "tags (faces)"),
        ):
            for clients in (1, 16):
                rate = asyncio.run(
                    time_service(base_url, route, bodies, clients, options.duration_s)
                )
                rows.append((name, "service", clients, rate))
    finally:
        stop()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"images: {IMAGE_COUNT} JPEGs {WIDTH_PX}x{HEIGHT_PX}; {options.duration_s} s per cell\n")
    print("| model | path | batch (direct) / concurrent clients (service) | images/s |")
    print("|---|---|---|---|")
    for name, path, batch, rate in rows:
        print(f"| {name} | {path} | {batch} | {rate:.1f} |")


if __name__ == "__main__":
    main()
