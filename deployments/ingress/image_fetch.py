"""Fetch image bytes for the ingress, without letting a URL reach inside our network.

What a URL must pass, on the first request and again on every redirect hop:

1. scheme ``http`` or ``https`` (``file://``, ``ftp://``, ``gopher://`` ... are refused), a host,
   no credentials in the URL;
2. DNS resolution here, then every resolved address must be publicly routable: loopback,
   private, link-local (169.254.0.0/16, so cloud metadata at 169.254.169.254), multicast,
   reserved, unspecified and other non-global ranges are refused, unless the host is listed
   in ``images.allowed_hosts``;
3. the connection goes to the address that was checked (the URL's host is swapped for the IP,
   the original name travels in ``Host`` and TLS SNI, and certificates are checked against
   it), so a second DNS answer cannot point the request elsewhere (DNS rebinding);
4. a 2xx answer with an ``image/*`` Content-Type, at most ``max_image_bytes`` counted while
   streaming (a declared Content-Length over the cap is refused before reading);
5. connect and read timeouts per hop, and one deadline for the whole fetch.

Redirects are followed by hand (httpx's automatic following would skip steps 1-3). Every
refusal raises `ImageInputError` with a code, a message naming the reason and the request
field; URLs never reach the logs (only a short hash of them).
"""

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from configs.ingress import ImageInputConfig
from models.exceptions import ImageInputError

logger = logging.getLogger("ray.serve")

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_CHARS = 4096
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def url_digest(url: str) -> str:
    """A short, stable, log-safe stand-in for a URL (URLs can carry tokens or personal data)."""
    return hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:12]


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (``"loopback"``, ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 is 127.0.0.1 on a dual-stack socket.
        address = address.ipv4_mapped
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        # Before "private": 169.254.0.0/16 counts as private too, and link-local (cloud
        # metadata) is the more useful reason to read.
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for reason, matched in checks:
        if matched:
            return reason
    if not address.is_global:
        return "not publicly routable"
    return None


@dataclass(frozen=True)
class _Target:
    """One hop's checked destination: the URL to request, Host header and TLS name."""

    request_url: httpx.URL
    host_header: str
    server_name: str


def _refuse(field: str, message: str, code: str = "image_url_refused") -> ImageInputError:
    return ImageInputError(field, message, code)


def decode_base64_image(value: str, max_bytes: int, field: str = "image_base64") -> bytes:
    """Bytes of a base64 image (a ``data:image/...;base64,`` prefix is accepted).

    Raises:
        ImageInputError: ``image_too_large`` (413) over ``max_bytes``, checked from the
            length before decoding; ``image_invalid_base64`` when it is not base64.
    """
    text = value.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise ImageInputError(
                field,
                f"{field} is a data URL without ';base64'; send base64 image bytes",
                "image_invalid_base64",
            )
    compact = "".join(text.split())
    if not compact:
        raise ImageInputError(field, f"{field} is empty; send base64 image bytes", "image_empty")
    estimated = len(compact) * 3 // 4
    if estimated > max_bytes:
        raise ImageInputError(
            field,
            f"{field} holds about {estimated} bytes; the limit is {max_bytes} bytes",
            "image_too_large",
            status=413,
        )
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(
            field,
            f"{field} is not valid base64 ({exc}); send the file's bytes base64-encoded",
            "image_invalid_base64",
        ) from exc


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # Scope ids ("fe80::1%eth0") are dropped: such addresses are refused anyway.
    return [str(info[4][0]).split("%")[0] for info in infos]


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs ~20 ms, too much per request.
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


class ImageFetcher:
    """Fetches image bytes under an `ImageInputConfig`; one per ingress replica (or test)."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        """``resolver(host, port)`` returns the host's addresses; default the system's DNS."""
        self._resolver = resolver or _system_resolver
        # No proxies from the environment (a proxy would make the address checks moot) and
        # no automatic redirects (each hop must be checked here).
        self._client = httpx.AsyncClient(
            verify=_ssl_context(),
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": "SocialPlay-AI-image-fetcher/0.1", "Accept": "image/*"},
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def fetch(self, url: str, config: ImageInputConfig, field: str = "image_url") -> bytes:
        """The image bytes at ``url``, or `ImageInputError` naming why they were refused."""
        digest = url_digest(url)
        try:
            async with asyncio.timeout(config.total_timeout_s):
                return await self._follow(url, config, field)
        except TimeoutError as exc:
            logger.info("image fetch %s: over the total deadline", digest)
            raise ImageInputError(
                field,
                f"fetching {field} took longer than {config.total_timeout_s} s in total; "
                "host the image somewhere faster or upload it",
                "image_fetch_timeout",
            ) from exc
        except httpx.TimeoutException as exc:
            logger.info("image fetch %s: %s", digest, type(exc).__name__)
            raise ImageInputError(
                field,
                f"the server of {field} did not answer in time ({type(exc).__name__}: connect "
                f"{config.connect_timeout_s} s, read {config.read_timeout_s} s); check the "
                "URL or upload the image",
                "image_fetch_timeout",
            ) from exc
        except httpx.HTTPError as exc:
            logger.info("image fetch %s: %s", digest, type(exc).__name__)
            raise ImageInputError(
                field,
                f"could not fetch {field} ({type(exc).__name__}); check that the URL is "
                "reachable or upload the image",
                "image_fetch_failed",
            ) from exc

    async def _follow(self, url: str, config: ImageInputConfig, field: str) -> bytes:
        current = url
        for _hop in range(config.max_redirects + 1):
            targets = await self._check(current, config, field)
            response = await self._connect(targets, config)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise _refuse(
                            field,
                            f"{field} redirected (HTTP {response.status_code}) without a "
                            "Location; link the image itself",
                            "image_fetch_failed",
                        )
                    current = urljoin(current, location)
                    continue
                return await self._read_body(response, config, field)
            finally:
                await response.aclose()
        raise _refuse(
            field,
            f"{field} redirected more than {config.max_redirects} times; link the image itself",
            "image_too_many_redirects",
        )

    async def _connect(self, targets: list[_Target], config: ImageInputConfig) -> httpx.Response:
        """Send the GET to the first checked address that accepts a connection."""
        timeout = httpx.Timeout(
            connect=config.connect_timeout_s,
            read=config.read_timeout_s,
            write=config.read_timeout_s,
            pool=config.connect_timeout_s,
        )
        for position, target in enumerate(targets):
            request = self._client.build_request(
                "GET",
                target.request_url,
                headers={"Host": target.host_header},
                timeout=timeout,
                extensions={"sni_hostname": target.server_name},
            )
            try:
                return await self._client.send(request, stream=True)
            except httpx.ConnectError:
                # A host with IPv6 and IPv4 addresses where one family is unreachable.
                if position == len(targets) - 1:
                    raise
        raise AssertionError("unreachable: _check returns at least one target")

    async def _check(self, url: str, config: ImageInputConfig, field: str) -> list[_Target]:
        """Scheme, host and resolved addresses of one hop; the checked address to connect to."""
        if len(url) > MAX_URL_CHARS:
            raise _refuse(field, f"{field} is {len(url)} characters; the limit is {MAX_URL_CHARS}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise _refuse(field, f"{field} is not a valid URL ({exc})") from exc
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            shown = scheme or "none"
            raise _refuse(
                field,
                f"{field} uses the scheme {shown!r}; only http and https URLs are fetched",
            )
        if parts.username is not None or parts.password is not None:
            raise _refuse(field, f"{field} carries credentials; send a URL without user:pass@")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise _refuse(field, f"{field} has no host; send an absolute http(s) URL")
        port = port or _DEFAULT_PORTS[scheme]
        addresses = await self._resolve(host, port, config, field)
        allowed = host in {h.strip().rstrip(".").lower() for h in config.allowed_hosts}
        if not allowed:
            for address in addresses:
                reason = address_refusal(address)
                if reason is not None:
                    raise _refuse(
                        field,
                        f"{field} points to a {reason} address ({address}), which is never "
                        "fetched; use a public image URL (operators: images.allowed_hosts)",
                    )
        host_header = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
        # Same path and query, but a checked address instead of the name (no fragment).
        base = httpx.URL(url)
        return [
            _Target(base.copy_with(host=str(a), port=port, fragment=None), host_header, host)
            for a in addresses
        ]

    async def _resolve(
        self, host: str, port: int, config: ImageInputConfig, field: str
    ) -> list[IPAddress]:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(config.connect_timeout_s):
                resolved = await self._resolver(host, port)
        except TimeoutError as exc:
            raise ImageInputError(
                field,
                f"resolving the host of {field} took over {config.connect_timeout_s} s",
                "image_fetch_timeout",
            ) from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise ImageInputError(
                field,
                f"the host of {field} does not resolve; check the URL",
                "image_fetch_failed",
            ) from exc
        addresses = [ipaddress.ip_address(address) for address in resolved]
        if not addresses:
            raise ImageInputError(
                field, f"the host of {field} has no address; check the URL", "image_fetch_failed"
            )
        return list(dict.fromkeys(addresses))

    @staticmethod
    async def _read_body(response: httpx.Response, config: ImageInputConfig, field: str) -> bytes:
        if not 200 <= response.status_code < 300:
            raise ImageInputError(
                field,
                f"the server of {field} answered HTTP {response.status_code}; check the URL",
                "image_fetch_failed",
            )
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not any(content_type.startswith(p.lower()) for p in config.allowed_content_types):
            raise ImageInputError(
                field,
                f"{field} is served as {content_type or 'no Content-Type'!r}, not an image "
                f"type ({', '.join(config.allowed_content_types)}); link the image file itself",
                "image_unsupported_type",
            )
        limit = config.max_image_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ImageInputError(
                field,
                f"{field} is {int(declared)} bytes; the limit is {limit} bytes",
                "image_too_large",
                status=413,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                # Stop reading at once: the rest of a huge (or endless) body never arrives.
                raise ImageInputError(
                    field,
                    f"{field} is over the limit of {limit} bytes (stopped reading at {size})",
                    "image_too_large",
                    status=413,
                )
            chunks.append(chunk)
        return b"".join(chunks)
