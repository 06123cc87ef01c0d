"""Key-value templates: JSON files naming the keys a form should offer (REMBI ships with us).

Why files: a facility adds its own (``ZSTACK_ANNOTATIONS__TEMPLATES_DIR``)
without code; the viewer reads them from ``GET /api/annotations/templates``
and offers their keys as a form whose answers become key-value pairs.

A template is ``{"name", "title", "description", "namespace", "sections":
[{"name", "title", "keys": [{"key", "description", "required", "repeatable"}]}]}``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from zstack_analyzer.service.annotations.schemas import TemplatePublic

__all__ = ["SHIPPED_DIR", "load_templates"]

logger = logging.getLogger(__name__)

#: The templates that come with the package.
SHIPPED_DIR = Path(__file__).resolve().parent / "templates"
#: Largest template file read (bytes).
MAX_TEMPLATE_BYTES = 256 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _read(path: Path) -> TemplatePublic | None:
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            logger.warning("%s: over %d bytes, ignored", path, MAX_TEMPLATE_BYTES)
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        template = TemplatePublic.model_validate(data)
    except (OSError, ValueError) as exc:
        logger.warning("%s: not a key-value template (%s), ignored", path, exc)
        return None
    if not _NAME.match(template.name):
        logger.warning("%s: template name %r is not a simple name, ignored", path, template.name)
        return None
    return template


def load_templates(extra_dir: Path | None = None) -> dict[str, TemplatePublic]:
    """``name -> template``: the shipped ones, then those of ``extra_dir`` (same name: theirs wins)."""
    found: dict[str, TemplatePublic] = {}
    for folder in (SHIPPED_DIR, extra_dir):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            template = _read(path)
            if template is not None:
                found[template.name] = template
    return found
