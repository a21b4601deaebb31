"""Object detection throughput: images and detections per second, offline and served.

    .venv/bin/python -m bench.objects                 # ~1.5 min on 2 cores
    .venv/bin/python -m bench.objects --duration-s 3  # quicker, noisier

Images: five photographs from scikit-image's wheel (astronaut, chelsea, coffee, rocket,
motorcycle; 300x451 to 512x512) as JPEGs. Offline: ``ObjectDetectorModel.predict_batch`` on
decoded arrays in this process, batches of 1 and 8, with the default two scales and with one.
Served: a private Ray instance (own temp dir, loopback port) running the graph with the
ObjectDetector node (serve_config's settings: two scales, batches of up to 8); one client,
then 8 concurrent clients, sending base64 JSON to ``/api/v1/image/objects`` (so the figure
includes the body, base64 and JPEG decoding in the ingress and the handle hop). Detections/s
is images/s x the mean number of objects the detector reports per image (min_score 0.25).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
from collections.abc import Callable

import httpx

from bench.images import BENCH_KEY, start_graph, time_direct, time_service
from models.detector import ObjectDetectorModel
from models.images import decode_image, encode_jpeg

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")


def photographs() -> list[bytes]:
    """The benchmark's photographs as JPEG bytes (scikit-image's bundled data)."""
    from skimage import data

    images = []
    for name in PHOTOS:
        pixels = getattr(data, name)()
        if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
            pixels = pixels[0]
        images.append(encode_jpeg(pixels, quality=90))
    return images


def start_service(num_threads: int) -> tuple[str, Callable[[], None]]:
    """A private Ray instance running the graph with the detector; its URL and stop()."""
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    batching = {"batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01}}
    options = {
        "Ingress": small,
        "TextModeration": small,
        "Sentiment": small,
        "ObjectDetector": {**small, "user_config": batching},
    }
    app_args = {"detector_model": {"enabled": True, "num_threads": num_threads}}
    return start_graph(app_args, options, "sp-bench-obj-")


def main() -> None:
    """Run every cell and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=8.0, help="Seconds per cell.")
    parser.add_argument("--num-threads", type=int, default=1, help="OpenCV threads.")
    options = parser.parse_args()
    files = photographs()
    arrays = [decode_image(data).pixels for data in files]
    rows: list[tuple[str, str, int, float, float]] = []
    for scales in ((1.0, 0.5), (1.0,)):
        model = ObjectDetectorModel.load(scales=scales, num_threads=options.num_threads)
        per_image = sum(len(r.objects) for r in model.predict_batch(arrays)) / len(arrays)
        for batch in (1, 8):
            rate = time_direct(model.predict_batch, arrays, batch, options.duration_s)
            rows.append((f"offline, scales {list(scales)}", "batch", batch, rate, per_image))
    base_url, stop = start_service(options.num_threads)
    try:
        bodies = [{"image_base64": base64.b64encode(data).decode()} for data in files]
        headers = {"X-API-Key": BENCH_KEY}
        found = [
            len(
                httpx.post(
                    f"{base_url}/api/v1/image/objects",
                    json=b,
                    headers=headers,
                    timeout=60,
                    trust_env=False,
                ).json()["objects"]
            )
            for b in bodies
        ]
        per_image = sum(found) / len(found)
        for clients in (1, 8):
            rate = asyncio.run(
                time_service(base_url, "/api/v1/image/objects", bodies, clients, options.duration_s)
            )
            rows.append(("served, scales [1.0, 0.5]", "clients", clients, rate, per_image))
    finally:
        stop()
    load = os.getloadavg()[0]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.1f} at the end"
    )
    print(
        f"{len(files)} photographs; {options.duration_s} s per cell; "
        f"OpenCV threads {options.num_threads}\n"
    )
    print("| path | batch / concurrent clients | images/s | detections/image | detections/s |")
    print("|---|---|---|---|---|")
    for path, kind, size, rate, per_image in rows:
        print(f"| {path} | {kind} {size} | {rate:.1f} | {per_image:.1f} | {rate * per_image:.1f} |")


if __name__ == "__main__":
    main()
