"""Image fetching: every hostile URL or body is refused with a named reason; loopback only."""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Iterator

import pytest

from deployments.ingress.image_fetch import address_refusal, decode_base64_image
from models.exceptions import ImageInputError
from models.images import decode_image
from tests.fixtures.image_fetching import fetch, fetch_config, refused
from tests.fixtures.image_server import (
    FIFTY_MB,
    ImageServer,
    closed_port,
    image_server,
    silent_port,
)


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


_config = fetch_config


def test_allowlisted_local_image_is_fetched_and_decodes(server: ImageServer) -> None:
    data = fetch(f"{server.base_url}/ok.png")
    decoded = decode_image(data)
    assert decoded.pixels.shape == (48, 64, 3) and decoded.format == "PNG"


def test_loopback_is_refused_when_not_allowlisted(server: ImageServer) -> None:
    error = refused(f"{server.base_url}/ok.png", _config(allowed_hosts=[]))
    assert error.code == "image_url_refused" and "loopback" in error.message


def test_localhost_name_is_checked_after_dns_not_by_spelling(server: ImageServer) -> None:
    # Only the literal 127.0.0.1 is allowlisted; the name "localhost" resolves to loopback.
    error = refused(f"http://localhost:{server.port}/ok.png")
    assert "loopback" in error.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00::1]/a.png", "private"),
        ("http://10.0.0.1/a.png", "private"),
        ("http://192.168.1.5/a.png", "private"),
        ("http://0.0.0.0/a.png", "unspecified"),
        ("http://224.0.0.1/a.png", "multicast"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://100.64.0.1/a.png", "not publicly routable"),
    ],
)
def test_non_public_addresses_are_refused_without_connecting(url: str, reason: str) -> None:
    started = time.monotonic()
    error = refused(url)
    assert reason in error.message and error.code == "image_url_refused"
    assert time.monotonic() - started < 1.0  # refused before any connection attempt


def test_dns_answer_is_checked_and_the_checked_address_is_used(server: ImageServer) -> None:
    async def evil(host: str, port: int) -> list[str]:
        return ["10.1.2.3"]

    assert "private" in refused("http://images.example/a.png", resolver=evil).message

    async def local(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    # The connection goes to the resolved (checked) address; the original name is the Host.
    config = _config(allowed_hosts=["images.example"])
    data = fetch(f"http://images.example:{server.port}/ok.png", config, resolver=local)
    assert data.startswith(b"\x89PNG")
    assert server.hosts_seen[-1] == f"images.example:{server.port}"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "gopher://127.0.0.1/", "/a.png"]
)
def test_non_http_schemes_are_refused(url: str) -> None:
    error = refused(url)
    assert error.code == "image_url_refused" and "only http and https" in error.message


def test_credentials_in_url_are_refused(server: ImageServer) -> None:
    assert "credentials" in refused(f"http://u:p@127.0.0.1:{server.port}/ok.png").message


def test_redirects_are_followed_and_every_hop_is_checked(server: ImageServer) -> None:
    assert fetch(f"{server.base_url}/redirect/ok").startswith(b"\x89PNG")
    private = refused(f"{server.base_url}/redirect/private")
    assert "private" in private.message and "10.0.0.1" in private.message
    metadata = refused(f"{server.base_url}/redirect/metadata")
    assert "link-local" in metadata.message
    assert "only http and https" in refused(f"{server.base_url}/redirect/file").message
    loop = refused(f"{server.base_url}/redirect/loop", _config(max_redirects=2))
    assert loop.code == "image_too_many_redirects"


def test_fifty_megabyte_bodies_are_refused_while_streaming(server: ImageServer) -> None:
    declared = refused(f"{server.base_url}/big-declared.png")
    assert declared.code == "image_too_large" and declared.status == 413
    assert str(FIFTY_MB) in declared.message
    started = time.monotonic()
    streamed = refused(f"{server.base_url}/big-streamed.png")
    assert streamed.code == "image_too_large" and streamed.status == 413
    assert "stopped reading" in streamed.message
    assert time.monotonic() - started < 5.0


def test_non_image_content_type_and_http_errors_are_refused(server: ImageServer) -> None:
    assert refused(f"{server.base_url}/page.html").code == "image_unsupported_type"
    missing = refused(f"{server.base_url}/missing.png")
    assert missing.code == "image_fetch_failed" and "404" in missing.message


def test_server_that_never_answers_times_out() -> None:
    with silent_port() as port:
        started = time.monotonic()
        error = refused(f"http://127.0.0.1:{port}/a.png")
    assert error.code == "image_fetch_timeout"
    assert time.monotonic() - started < 3.0


def test_closed_port_fails_fast_with_a_4xx() -> None:
    error = refused(f"http://127.0.0.1:{closed_port()}/a.png")
    assert error.code == "image_fetch_failed"


def test_fetched_text_named_jpg_truncated_jpeg_and_bomb_fail_to_decode(
    server: ImageServer,
) -> None:
    with pytest.raises(ImageInputError) as text:
        decode_image(fetch(f"{server.base_url}/text.jpg"))
    assert text.value.code == "image_invalid"
    with pytest.raises(ImageInputError) as truncated:
        decode_image(fetch(f"{server.base_url}/truncated.jpg"))
    assert truncated.value.code == "image_invalid" and "truncated" in truncated.value.message
    with pytest.raises(ImageInputError) as bomb:
        decode_image(fetch(f"{server.base_url}/huge.png"))
    assert bomb.value.code == "image_too_many_pixels" and bomb.value.status == 413
    assert "400000000 pixels" in bomb.value.message


def test_base64_images_decode_and_are_capped() -> None:
    payload = b"\x89PNG-bytes"
    encoded = base64.b64encode(payload).decode()
    assert decode_base64_image(encoded, 1024) == payload
    assert decode_base64_image(f"data:image/png;base64,{encoded}", 1024) == payload
    with pytest.raises(ImageInputError) as bad:
        decode_base64_image("not base64 at all!", 1024)
    assert bad.value.code == "image_invalid_base64"
    with pytest.raises(ImageInputError) as big:
        decode_base64_image("A" * 4000, 1024)
    assert big.value.code == "image_too_large" and big.value.status == 413


def test_public_addresses_pass_the_address_check() -> None:
    assert address_refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert address_refusal(ipaddress.ip_address("2606:4700::1111")) is None
