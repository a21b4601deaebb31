"""Hostile image URLs and servers: compression bombs, unparsable URLs, IPv6 forms that wrap a
private IPv4, and more fetches than the replica allows at once. Loopback servers only.

Each refusal is an `ImageInputError` (a 4xx naming the field), checked both against the fetcher
and, where the issue saw a 500, through the ingress app.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from configs.ingress import ImageInputConfig
from deployments.ingress.app import build_fastapi_app
from deployments.ingress.image_fetch import (
    WRAPPING_NETWORKS,
    ImageFetcher,
    address_refusal,
    check_url_characters,
)
from models.exceptions import ImageInputError, OverloadedError
from tests.fixtures.hostile_server import PNG, HostileServer, gzip_bomb, hostile_server
from tests.fixtures.image_fetching import fetch, fetch_config, refused
from tests.fixtures.image_server import silent_port
from tests.unit.deployments.ingress.fakes import FakeNode, fake_state

RSS_GROWTH_LIMIT_BYTES = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


@pytest.fixture(scope="module")
def server(bomb: bytes) -> Iterator[HostileServer]:
    with hostile_server(bomb) as running:
        yield running


def _config(**overrides: Any) -> ImageInputConfig:
    return fetch_config(**{"read_timeout_s": 1.0, **overrides})


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- compression ------------------------------------------------------------------------------
def test_a_gzip_bomb_is_refused_unread_and_memory_stays_flat(server: HostileServer) -> None:
    assert fetch(f"{server.base_url}/identity.png") == PNG  # warm up: client, pool, imports
    before = _resident_bytes()
    error = refused(f"{server.base_url}/bomb.png")
    growth = _resident_bytes() - before
    assert error.code == "image_compressed"
    assert "compressed bodies are refused" in error.message and "gzip, gzip, gzip" in error.message
    assert growth < RSS_GROWTH_LIMIT_BYTES, f"resident memory grew by {growth} bytes"
    assert server.accept_encodings[-1] == "identity", "the fetcher must ask for identity"


@pytest.mark.parametrize("path", ["/gzip.png", "/br.png"])
def test_any_content_encoding_but_identity_is_refused(server: HostileServer, path: str) -> None:
    assert refused(f"{server.base_url}{path}").code == "image_compressed"


def test_the_ingress_refuses_the_bomb_with_a_4xx_naming_the_field(server: HostileServer) -> None:
    state = fake_state(
        {"nsfw": FakeNode("NsfwDetector", predict=RuntimeError("never called"))},
        config={"images": {"allowed_hosts": ["127.0.0.1"], "total_timeout_s": 5.0}},
    )
    with TestClient(build_fastapi_app(state), headers={"X-API-Key": "unit-test-key"}) as client:
        client.post("/api/v1/moderation/image", json={"image_url": "http://127.0.0.1:1/x"})
        before = _resident_bytes()
        response = client.post(
            "/api/v1/moderation/image", json={"image_url": f"{server.base_url}/bomb.png"}
        )
        growth = _resident_bytes() - before
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "image_url" and error["code"] == "image_compressed"
    assert growth < RSS_GROWTH_LIMIT_BYTES, f"resident memory grew by {growth} bytes"


# ---- URLs that do not parse -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:18231/a\u0001b.png", "U+0001"),
        ("http://127.0.0.1:18231/a\u0000b.png", "U+0000"),
        ("http://127.0.0.1:18231/a b.png", "U+0020"),
        ("http://exa\tmple.com/a.png", "U+0009"),
        ("http://example.com/a\nb.png", "U+000A"),
        ("http://example.com\u200b/a.png", "U+200B"),
        ("http://example.com/\u202egnp.exe", "U+202E"),
        ("http://example.com/a\u007f.png", "U+007F"),
    ],
)
def test_control_format_and_space_characters_are_refused(url: str, said: str) -> None:
    error = refused(url)
    assert error.code == "image_url_refused" and said in error.message
    assert "percent-encode" in error.message
    with pytest.raises(ImageInputError):
        check_url_characters(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/a.png",  # urlsplit: invalid IPv6
        "http://example.com:99999/a.png",  # urlsplit: port out of range
        "http://[::1]x/a.png",  # httpx: invalid port
        "http://\u2603.net/a.png",  # httpx: invalid IDNA host
        "http://\uff0e\uff0e/a.png",  # httpx: invalid IDNA host
    ],
)
def test_every_url_parse_error_is_a_refusal(url: str) -> None:
    error = refused(url)
    assert error.code == "image_url_refused" and "not a valid URL" in error.message


def test_a_redirect_to_an_unparsable_location_is_refused(server: HostileServer) -> None:
    # httpx itself refuses to build the next request (RemoteProtocolError): a handled 4xx.
    assert refused(f"{server.base_url}/redirect/unparsable").code == "image_fetch_failed"


def test_the_ingress_answers_the_control_character_url_with_a_4xx() -> None:
    state = fake_state({"nsfw": FakeNode("NsfwDetector", predict=RuntimeError("never called"))})
    with TestClient(build_fastapi_app(state), headers={"X-API-Key": "unit-test-key"}) as client:
        response = client.post(
            "/api/v1/moderation/image",
            json={"image_url": "http://127.0.0.1:18231/a\u0001b.png"},
        )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "image_url" and "U+0001" in error["message"]


# ---- IPv6 forms that wrap an IPv4 address -----------------------------------------------------
WRAPPED = [
    ("2002:a00:1::", "6to4"),  # 6to4 of 10.0.0.1
    ("2002:7f00:1::1", "6to4"),  # 6to4 of 127.0.0.1
    ("fec0::1", "site-local"),
    ("64:ff9b::a00:1", "NAT64"),  # NAT64 of 10.0.0.1
    ("64:ff9b::808:808", "NAT64"),  # even a public IPv4 behind the translator
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),  # a mapped public IPv4: refused as a form
    ("::a00:1", "IPv4-compatible"),
    ("::808:808", "IPv4-compatible"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
]


@pytest.mark.parametrize(("address", "reason"), WRAPPED)
def test_ipv6_forms_wrapping_ipv4_are_refused(address: str, reason: str) -> None:
    assert reason in (address_refusal(ipaddress.ip_address(address)) or "")
    literal = refused(f"http://[{address}]/a.png")
    assert reason in literal.message and literal.code == "image_url_refused"

    async def resolves_to_it(host: str, port: int) -> list[str]:
        return ["93.184.216.34", address]  # one bad address among good ones is enough

    by_dns = refused("http://images.example/a.png", resolver=resolves_to_it)
    assert reason in by_dns.message


def test_the_deny_list_keeps_its_networks_and_their_names() -> None:
    # Python 3.11's ipaddress calls several of these global: the list must not shrink.
    listed = {str(network) for network, _name in WRAPPING_NETWORKS}
    assert listed == {
        "::ffff:0:0/96",
        "::/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
        "fec0::/10",
    }


def test_specific_reasons_win_for_loopback_forms() -> None:
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"
    assert address_refusal(ipaddress.ip_address("::1")) == "loopback"
    assert address_refusal(ipaddress.ip_address("::")) == "unspecified"
    assert address_refusal(ipaddress.ip_address("2606:4700::1111")) is None


@pytest.mark.parametrize(
    ("path", "reason"), [("/redirect/6to4", "6to4"), ("/redirect/nat64", "NAT64")]
)
def test_redirects_to_wrapped_forms_are_refused(
    server: HostileServer, path: str, reason: str
) -> None:
    assert reason in refused(f"{server.base_url}{path}").message


# ---- a bound on concurrent fetches ------------------------------------------------------------
def test_fetches_beyond_the_bound_are_refused_as_overload(server: HostileServer) -> None:
    config = _config(max_concurrent_fetches=1, fetch_slot_wait_s=0.05, read_timeout_s=1.0)

    async def run() -> tuple[BaseException | bytes, OverloadedError, bytes]:
        fetcher = ImageFetcher()
        try:
            with silent_port() as port:
                # Holds the only slot until its read timeout (the port never answers).
                stuck = asyncio.create_task(
                    fetcher.fetch(f"http://127.0.0.1:{port}/a.png", config, "image_url")
                )
                await asyncio.sleep(0.1)
                with pytest.raises(OverloadedError) as overloaded:
                    await fetcher.fetch(f"{server.base_url}/identity.png", config, "image_url")
                first = (await asyncio.gather(stuck, return_exceptions=True))[0]
            # The slot is free again once the stuck fetch failed.
            after = await fetcher.fetch(f"{server.base_url}/identity.png", config, "image_url")
            return first, overloaded.value, after
        finally:
            await fetcher.aclose()

    first, overloaded, after = asyncio.run(run())
    assert isinstance(first, ImageInputError) and first.code == "image_fetch_timeout"
    assert overloaded.retry_after_s > 0
    assert "images.max_concurrent_fetches" in overloaded.message
    assert after == PNG


def test_the_bound_follows_the_live_config(server: HostileServer) -> None:
    async def run() -> list[bytes]:
        fetcher = ImageFetcher()
        try:
            url = f"{server.base_url}/identity.png"
            narrow = _config(max_concurrent_fetches=1, fetch_slot_wait_s=0.0)
            with pytest.raises(OverloadedError):
                await asyncio.gather(*(fetcher.fetch(url, narrow) for _ in range(2)))
            wider = _config(max_concurrent_fetches=4, fetch_slot_wait_s=0.0)
            return list(await asyncio.gather(*(fetcher.fetch(url, wider) for _ in range(4))))
        finally:
            await fetcher.aclose()

    assert asyncio.run(run()) == [PNG] * 4
