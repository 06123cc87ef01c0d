"""Regions of interest: shapes as in the OME model, their pixels, statistics, import and export.

Library code: it knows readers, never the service (the HTTP routes and the
CLI call these functions).
"""

from zstack_analyzer.roi.shapes import PlaneSizes, Shape, parse_shape, parse_shapes
from zstack_analyzer.roi.stats import measure_roi

__all__ = ["PlaneSizes", "Shape", "measure_roi", "parse_shape", "parse_shapes"]
