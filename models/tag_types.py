"""What image tagging answers, and how detector-backed tags merge in: no torch here.

The ingress merges tags the object detector backs into the ImageTagger's answer; it imports
this module only, so it never loads torch (`models.tagger` holds the CLIP model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.faces import Faces

__all__ = [
    "CLIP_SOURCE",
    "DEFAULT_PROMPT_TEMPLATE",
    "DEFAULT_TAGS",
    "DEFAULT_TOP_K",
    "FACES_SOURCE",
    "OBJECTS_SOURCE",
    "ImageTag",
    "ImageTags",
    "add_backed_tags",
]

# The design document's candidate tags.
DEFAULT_TAGS: tuple[str, ...] = (
    "food",
    "nature",
    "people",
    "animal",
    "travel",
    "technology",
    "sports",
    "art",
    "fashion",
    "music",
    "selfie",
    "group photo",
    "landscape",
    "sunset",
    "beach",
)
# CLIP was trained on captions: "a photo of {tag}" scores better than the bare word.
DEFAULT_PROMPT_TEMPLATE = "a photo of {tag}"
DEFAULT_TOP_K = 5
CLIP_SOURCE = "clip"
FACES_SOURCE = "faces"
OBJECTS_SOURCE = "objects"


@dataclass(frozen=True)
class ImageTag:
    """One tag: CLIP's probability for it (None when only a detector backs it) and the
    models that produced it (``"clip"``, ``"faces"``)."""

    tag: str
    score: float | None
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ImageTags:
    """The tags of one image, the faces found in it and the models that ran on it."""

    tags: tuple[ImageTag, ...]
    faces: Faces
    models: tuple[str, ...]


def add_backed_tags(
    tags: Sequence[ImageTag], backed: Sequence[str], source: str
) -> tuple[ImageTag, ...]:
    """`tags` with `source` added to those in `backed`, and `backed`'s others appended.

    A new tag's score is null (a detector backs it, not CLIP); it follows the listed tags.
    """
    listed = {tag.tag: tag for tag in tags}
    for name in backed:
        tag = listed.get(name)
        if tag is None:
            listed[name] = ImageTag(name, None, (source,))
        elif source not in tag.sources:
            listed[name] = ImageTag(name, tag.score, (*tag.sources, source))
    return tuple(listed.values())
