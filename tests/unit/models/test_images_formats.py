"""Only the documented formats are decoded: JPEG, PNG, WebP, GIF and BMP.

Every other format Pillow could read is refused with a 4xx naming it (when its signature is
known) and the formats accepted, and its reader never runs on the bytes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import EpsImagePlugin, IcoImagePlugin, Image, PsdImagePlugin, TiffImagePlugin

from models.exceptions import ImageInputError
from models.images import ACCEPTED_FORMATS, decode_image, refused_format

PIXELS = np.full((24, 32, 3), (200, 30, 60), dtype=np.uint8)


def _saved(format_name: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).convert(mode).save(buffer, format=format_name)
    return buffer.getvalue()


@pytest.mark.parametrize("format_name", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_each_accepted_format_decodes(format_name: str) -> None:
    decoded = decode_image(_saved(format_name, "P" if format_name == "GIF" else "RGB"))
    assert decoded.format == format_name
    assert decoded.pixels.shape == (24, 32, 3)
    assert decoded.original_width == 32 and decoded.original_height == 24


def test_the_accepted_list_is_the_documented_one() -> None:
    assert set(ACCEPTED_FORMATS) == {"JPEG", "PNG", "WEBP", "GIF", "BMP"}


def _psd_header() -> bytes:
    # Pillow cannot write PSD: a valid 3-channel 8-bit header, then no data.
    return (
        b"8BPS"
        + b"\x00\x01"
        + b"\x00" * 6
        + b"\x00\x03"
        + b"\x00\x00\x00\x18" * 2
        + b"\x00\x08\x00\x03"
    )


REFUSED = [
    ("TIFF", lambda: _saved("TIFF")),
    ("ICO", lambda: _saved("ICO")),
    ("EPS", lambda: _saved("EPS")),
    ("PSD", _psd_header),
    ("PDF", lambda: _saved("PDF")),
    ("DDS", lambda: _saved("DDS")),
    ("QOI", lambda: _saved("QOI")),
    ("JPEG 2000", lambda: _saved("JPEG2000")),
    ("ICNS", lambda: _saved("ICNS")),
    ("SVG", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'),
    ("HEIC", lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
    ("AVIF", lambda: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"),
]


@pytest.mark.parametrize(("name", "payload"), REFUSED, ids=[name for name, _ in REFUSED])
def test_other_formats_are_refused_by_name(name: str, payload: object) -> None:
    data = payload()  # type: ignore[operator]
    assert refused_format(data) == name
    with pytest.raises(ImageInputError) as caught:
        decode_image(data, field="image_base64")
    error = caught.value
    assert error.code == "image_unsupported_format" and error.status == 422
    assert error.field == "image_base64"
    assert f"is a {name} file" in error.message and "JPEG, PNG, WebP, GIF or BMP" in error.message


@pytest.mark.parametrize("format_name", ["PCX", "TGA", "PPM", "SGI"])
def test_unnamed_formats_pillow_reads_are_refused_as_invalid(format_name: str) -> None:
    data = _saved(format_name)
    assert Image.open(io.BytesIO(data)).format == format_name  # Pillow alone would read it
    with pytest.raises(ImageInputError) as caught:
        decode_image(data)
    assert caught.value.code == "image_invalid" and 400 <= caught.value.status < 500
    assert "JPEG, PNG, WebP, GIF or BMP" in caught.value.message


def test_refused_readers_never_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(self: object) -> None:
        raise AssertionError("a refused format's reader parsed untrusted bytes")

    payloads = [_saved("TIFF"), _saved("ICO"), _saved("EPS"), _psd_header()]
    for plugin in (
        TiffImagePlugin.TiffImageFile,
        IcoImagePlugin.IcoImageFile,
        EpsImagePlugin.EpsImageFile,
        PsdImagePlugin.PsdImageFile,
    ):
        monkeypatch.setattr(plugin, "_open", must_not_run)
    for data in payloads:
        with pytest.raises(ImageInputError) as caught:
            decode_image(data)
        assert caught.value.code == "image_unsupported_format"
