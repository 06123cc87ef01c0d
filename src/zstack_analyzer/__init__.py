"""zstack-analyzer: fast, correct microscopy metadata, thumbnails and a web service.

Examples
--------
>>> from zstack_analyzer import open_image
>>> with open_image("cells.czi") as image:  # doctest: +SKIP
...     md = image.metadata(0)
"""

from importlib.metadata import PackageNotFoundError, version

from zstack_analyzer.errors import (
    CorruptFileError,
    ImageLoadError,
    LimitExceededError,
    MetadataError,
    MissingDependencyError,
    SceneNotFoundError,
    UnsupportedFormatError,
    ZstackError,
)
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.loader import ImageLoader, open_image
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.registry import supported_formats

try:  # the installed distribution's version: one source of truth, pyproject.toml
    __version__ = version("zstack-analyzer")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = [
    "ChannelInfo",
    "CorruptFileError",
    "ImageLoadError",
    "ImageLoader",
    "ImageMetadata",
    "LimitExceededError",
    "MetadataError",
    "MicroscopeInfo",
    "MissingDependencyError",
    "ObjectiveInfo",
    "PhysicalSize",
    "ReadLimits",
    "SceneInfo",
    "SceneNotFoundError",
    "ThumbnailGenerator",
    "UnsupportedFormatError",
    "ZstackError",
    "open_image",
    "supported_formats",
]


def __getattr__(name: str) -> object:
    # ThumbnailGenerator pulls in Pillow and the renderers: imported on first use only.
    if name == "ThumbnailGenerator":
        from zstack_analyzer.render.thumbnails import ThumbnailGenerator

        return ThumbnailGenerator
    msg = f"module 'zstack_analyzer' has no attribute {name!r}"
    raise AttributeError(msg)
