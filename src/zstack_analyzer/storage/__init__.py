"""Where stored originals live: a local folder (default) or an S3-compatible bucket.

Examples
--------
>>> from pathlib import Path
>>> from zstack_analyzer.storage import LocalStorage
>>> LocalStorage(Path("/tmp/zs/images"), Path("/tmp/zs/tmp")).path("ab.tif").name
'ab.tif'
"""

from zstack_analyzer.storage.base import ObjectStorage, SweepReport, UploadMirror
from zstack_analyzer.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectStorage", "SweepReport", "UploadMirror"]
