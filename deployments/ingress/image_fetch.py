"""Fetch image bytes for the ingress, without letting a URL reach inside our network.

What a URL must pass, on the first request and again on every redirect hop:

1. scheme ``http`` or ``https`` (``file://``, ``ftp://``, ``gopher://`` ... are refused), a host,
   no credentials, no control, format or whitespace characters in the URL, and a URL that
   parses (every parse error is a refusal naming the field, never a 500);
2. DNS resolution here, then every resolved address must be publicly routable: loopback,
   private, link-local (169.254.0.0/16, so cloud metadata at 169.254.169.254), multicast,
   reserved, unspecified and other non-global ranges are refused, and so is every IPv6 form
   that wraps or translates an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
   Teredo) or is site-local, from an explicit list (``WRAPPING_NETWORKS``: Python 3.11's
   ``ipaddress`` calls some of them global), unless the host is listed in
   ``images.allowed_hosts``;
3. the connection goes to the address that was checked (the URL's host is swapped for the IP,
   the original name travels in ``Host`` and TLS SNI, and certificates are checked against
   it), so a second DNS answer cannot point the request elsewhere (DNS rebinding);
4. a 2xx answer with an ``image/*`` Content-Type and no ``Content-Encoding`` other than
   ``identity`` (the request asks for ``Accept-Encoding: identity``; a compressed body is
   refused unread, so nothing is ever decompressed here, and a gzip bomb costs nothing), at
   most ``max_image_bytes`` raw bytes counted while streaming (a declared Content-Length over
   the cap is refused before reading);
5. connect and read timeouts per hop, and one deadline for the whole fetch;
6. at most ``max_concurrent_fetches`` fetches at once per ingress replica: a fetch that finds
   no free slot within ``fetch_slot_wait_s`` raises `OverloadedError` (503 with Retry-After)
   instead of queueing without bound.

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
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from configs.ingress import ImageInputConfig
from models.exceptions import ImageInputError, OverloadedError

logger = logging.getLogger("ray.serve")

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_CHARS = 4096
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Unicode categories never valid unencoded in a URL: controls (U+0000-U+001F, U+007F-U+009F),
# format characters (zero-width, bidi overrides: they make a URL read as another) and
# separators (spaces).
_REFUSED_CHAR_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# What a client is told to wait when every fetch slot stays busy: fetches usually take well
# under a second, so a slot is likely free by then.
OVERLOAD_RETRY_AFTER_S = 1.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def url_digest(url: str) -> str:
    """A short, stable, log-safe stand-in for a URL (URLs can carry tokens or personal data)."""
    return hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:12]


# IPv6 ranges refused whatever ``ipaddress`` says of them: each wraps, translates or tunnels
# to an IPv4 address (which may be private: 2002:a00:1:: is 10.0.0.1 behind a 6to4 relay,
# 64:ff9b::7f00:1 is 127.0.0.1 behind a NAT64 gateway) or is deprecated site-local (a private
# range Python 3.11 calls global). Public images are served over plain IPv4 or native IPv6.
WRAPPING_NETWORKS: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(network), name)
    for network, name in (
        ("::ffff:0:0/96", "IPv4-mapped IPv6"),
        ("::/96", "IPv4-compatible IPv6"),
        ("64:ff9b::/96", "NAT64 (IPv4-translating)"),
        ("64:ff9b:1::/48", "local-use NAT64 (IPv4-translating)"),
        ("2002::/16", "6to4 (IPv4-tunnelling)"),
        ("2001::/32", "Teredo (IPv4-tunnelling)"),
        ("fec0::/10", "site-local IPv6"),
    )
)


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (``"loopback"``, ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:127.0.0.1 is 127.0.0.1 on a dual-stack socket: name the IPv4 reason.
            mapped_reason = _plain_refusal(address.ipv4_mapped)
            if mapped_reason is not None:
                return mapped_reason
        # ::1 and :: lie inside ::/96 too; their own names read better.
        if not (address.is_loopback or address.is_unspecified):
            for network, name in WRAPPING_NETWORKS:
                if address in network:
                    return f"{name} ({network})"
    return _plain_refusal(address)


def _plain_refusal(address: IPAddress) -> str | None:
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


def check_url_characters(url: str, field: str = "image_url") -> None:
    """Refuse a URL with a control, format or whitespace character anywhere in it.

    Such characters are never valid unencoded in a URL; some parsers drop or split at them,
    so two parsers could read two different hosts from one string.
    """
    for position, char in enumerate(url):
        if unicodedata.category(char) in _REFUSED_CHAR_CATEGORIES:
            raise _refuse(
                field,
                f"{field} holds the character U+{ord(char):04X} "
                f"({unicodedata.name(char, 'a control character').lower()}) at position "
                f"{position}; percent-encode it or remove it",
            )


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
            # identity: a compressed answer is refused (see _read_body), never decompressed.
            headers={
                "User-Agent": "SocialPlay-AI-image-fetcher/0.1",
                "Accept": "image/*",
                "Accept-Encoding": "identity",
            },
        )
        # Built on first use and again when max_concurrent_fetches changes (live config).
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def fetch(self, url: str, config: ImageInputConfig, field: str = "image_url") -> bytes:
        """The image bytes at ``url``, or `ImageInputError` naming why they were refused.

        Raises:
            ImageInputError: the URL, its server or its answer was refused (a 4xx).
            OverloadedError: ``max_concurrent_fetches`` fetches were in flight for longer
                than ``fetch_slot_wait_s``.
        """
        url = url.strip()
        check_url_characters(url, field)
        slots = self._slots_for(config)
        try:
            async with asyncio.timeout(config.fetch_slot_wait_s):
                await slots.acquire()
        except TimeoutError as exc:
            raise OverloadedError(
                f"{config.max_concurrent_fetches} image fetches are already in flight on this "
                f"replica (images.max_concurrent_fetches); retry {field} in "
                f"{OVERLOAD_RETRY_AFTER_S:g} s",
                OVERLOAD_RETRY_AFTER_S,
            ) from exc
        try:
            return await self._fetch(url, config, field)
        finally:
            slots.release()

    def _slots_for(self, config: ImageInputConfig) -> asyncio.Semaphore:
        if self._slots is None or self._slots_size != config.max_concurrent_fetches:
            # Fetches in flight release the old semaphore; new ones count against the new size.
            self._slots = asyncio.Semaphore(config.max_concurrent_fetches)
            self._slots_size = config.max_concurrent_fetches
        return self._slots

    async def _fetch(self, url: str, config: ImageInputConfig, field: str) -> bytes:
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
        except httpx.InvalidURL as exc:
            # Belt: _check parses every hop first, but no URL httpx cannot build may be a 500.
            logger.info("image fetch %s: invalid URL", digest)
            raise _refuse(field, f"{field} is not a valid URL ({exc}); check the URL") from exc

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
                    try:
                        current = urljoin(current, location)
                    except ValueError as exc:
                        raise _refuse(
                            field,
                            f"{field} redirected to a Location that is not a valid URL "
                            f"({exc}); link the image itself",
                            "image_fetch_failed",
                        ) from exc
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
        # Again on every hop: a redirect's Location is as untrusted as the request.
        check_url_characters(url, field)
        try:
            parts = urlsplit(url)
            port = parts.port
            # httpx parses stricter than urlsplit (IDNA hosts, ports, IPv6 literals): parsing
            # here, inside the handled errors, turns each of its refusals into a 4xx.
            base = httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:
            raise _refuse(field, f"{field} is not a valid URL ({exc}); check the URL") from exc
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
        try:
            return [
                _Target(base.copy_with(host=str(a), port=port, fragment=None), host_header, host)
                for a in addresses
            ]
        except httpx.InvalidURL as exc:
            raise _refuse(field, f"{field} is not a valid URL ({exc}); check the URL") from exc

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
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            # Asked for identity; a compressed answer would be decompressed before it could be
            # counted (a few KB of gzip can hold gigabytes), so it is refused unread.
            raise ImageInputError(
                field,
                f"the server of {field} sent a compressed body (Content-Encoding: "
                f"{encoding[:64]!r}); compressed bodies are refused, serve the image file "
                "uncompressed (Content-Encoding: identity)",
                "image_compressed",
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
        # Raw bytes as they came off the wire: nothing decodes them, so the count is real.
        async for chunk in response.aiter_raw():
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
