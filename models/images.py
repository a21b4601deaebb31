"""Decode untrusted image bytes into RGB arrays, safely.

Guards, in the order they run:

* only the formats in ``ACCEPTED_FORMATS`` (JPEG, PNG, WebP, GIF, BMP) are parsed at all:
  Pillow's other readers (TIFF, PSD, EPS, ICO, PCX, ... dozens) never see untrusted bytes,
  and a file in one of them is refused naming its format when its signature is known;
* the header is read first and the pixel count (width x height x frames read) checked against
  a cap *before* any pixel is decoded, so a tiny file that claims 20000x20000 pixels (a
  decompression bomb) is refused without allocating 1.2 GB;
* bytes that are not an image Pillow knows, and truncated files, raise `ImageInputError`
  (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off, so a cut-off JPEG is an error, not a grey
  half-image);
* the decoded image is shrunk to at most ``max_side_px`` on its longer side: every model here
  works at 224-640 px, and a bounded array is cheap to send to a model node.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from models.exceptions import ImageInputError

# Pillow's own bomb check warns at 89 Mpx and raises at twice that; ours is stricter and
# configurable, so Pillow's is turned into an error too (never a warning that slips by).
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE_PX = 1024

RGBImage = NDArray[np.uint8]

# The formats the API documents (docs/api.md); Pillow's names. A camera JPEG with several
# pictures (MPO) is opened by the JPEG reader and stays accepted.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
_ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF or BMP"
# Leading bytes of formats Pillow (or a browser) knows but we refuse, to name them in errors.
_REFUSED_SIGNATURES = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"gimp xcf", "XCF"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}

_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image (H x W x 3, uint8) and the size of the original it was shrunk from."""

    pixels: RGBImage
    original_width: int
    original_height: int
    format: str

    @property
    def scale(self) -> float:
        """Original width over decoded width: multiply boxes by this to get original pixels."""
        return float(self.original_width) / int(self.pixels.shape[1])


def decode_image(
    data: bytes,
    field: str = "image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side_px: int = DEFAULT_MAX_SIDE_PX,
) -> DecodedImage:
    """Decode ``data`` into an RGB array no larger than ``max_side_px`` on its longer side.

    Args:
        data: The raw file bytes: JPEG, PNG, WebP, GIF or BMP (``ACCEPTED_FORMATS``).
        field: Request field named in errors (for example ``images[2]``).
        max_pixels: Largest width x height accepted, checked from the header before decoding.
        max_side_px: Longer side of the returned array; larger images are shrunk (aspect kept).

    Raises:
        ImageInputError: ``image_empty``, ``image_unsupported_format`` (an image format not
            in ``ACCEPTED_FORMATS``, named when its signature is known), ``image_invalid``
            (not an image, or truncated), or ``image_too_many_pixels`` (413).
    """
    if not data:
        raise ImageInputError(field, f"{field} is empty; send the image's bytes", "image_empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageInputError(
                    field,
                    f"{field} is {width}x{height} = {width * height} pixels; the limit is "
                    f"{max_pixels} pixels; send a smaller image",
                    "image_too_many_pixels",
                    status=413,
                )
            image_format = image.format or "unknown"
            if image.getexif().get(_EXIF_ORIENTATION) in _ROTATED_ORIENTATIONS:
                # exif_transpose below turns the picture by 90 degrees: report the size as seen.
                width, height = height, width
            # draft() lets JPEG decode at 1/2..1/8 scale directly: far less work for big photos.
            image.draft("RGB", (max_side_px, max_side_px))
            image.load()
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(
            field,
            f"{field} has too many pixels to decode safely ({exc}); the limit is {max_pixels} "
            "pixels; send a smaller image",
            "image_too_many_pixels",
            status=413,
        ) from exc
    except UnidentifiedImageError as exc:
        refused = refused_format(data)
        if refused is not None:
            raise ImageInputError(
                field,
                f"{field} is a {refused} file; accepted formats are {_ACCEPTED_NAMES}: "
                "convert it to one of them",
                "image_unsupported_format",
            ) from exc
        raise ImageInputError(
            field,
            f"{field} is not an image in an accepted format ({len(data)} bytes); send a "
            f"{_ACCEPTED_NAMES} file",
            "image_invalid",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated or corrupt data as OSError (and SyntaxError for some
        # broken PNG chunks).
        raise ImageInputError(
            field,
            f"{field} could not be decoded: the file is truncated or corrupt "
            f"({type(exc).__name__}); send the complete file",
            "image_invalid",
        ) from exc
    if max(rgb.size) > max_side_px:
        rgb.thumbnail((max_side_px, max_side_px), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.uint8)
    return DecodedImage(pixels, width, height, image_format)


def refused_format(data: bytes) -> str | None:
    """The name of a known image format we refuse, from the file's first bytes, or None.

    Read from the signature only: the refused format's reader is never run.
    """
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[data[8:12]]
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return None


def encode_png(pixels: RGBImage) -> bytes:
    """PNG bytes of an RGB array (for tests, benchmarks and examples)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_jpeg(pixels: RGBImage, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB array (for tests, benchmarks and examples)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class ImageTagRequest:
    """One image to tag and how many CLIP tags to keep (None: the tagger's ``top_k``).

    One batch may mix requests that ask for different numbers of tags.
    """

    image: RGBImage
    top_k: int | None = None
