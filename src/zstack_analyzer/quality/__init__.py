"""Image quality measured from planes as they stream by: focus, exposure, signal.

Library code, no database and no web: the service stores and serves what
these functions return. Formulas: :mod:`.plane` (per plane) and :mod:`.stack`
(per channel over Z and T).
"""

from zstack_analyzer.quality.plane import PlaneAccumulator, PlaneQuality, measure_plane
from zstack_analyzer.quality.read import (
    builder_for,
    measure_file,
    measure_reader,
    thumbnail_with_quality,
)
from zstack_analyzer.quality.stack import (
    ChannelQuality,
    QualityBuilder,
    SceneQuality,
    exponential_rate,
)

__all__ = [
    "ChannelQuality",
    "PlaneAccumulator",
    "PlaneQuality",
    "QualityBuilder",
    "SceneQuality",
    "builder_for",
    "exponential_rate",
    "measure_file",
    "measure_plane",
    "measure_reader",
    "thumbnail_with_quality",
]
