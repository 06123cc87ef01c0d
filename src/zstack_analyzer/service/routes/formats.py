"""The formats table: which extensions we read and whether their packages are installed."""

from fastapi import APIRouter

from zstack_analyzer.registry import supported_formats
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.schemas import FormatPublic, FormatsPublic

__all__ = ["router"]

router = APIRouter(prefix="/api/images", tags=["formats"])


@router.get(
    "/formats/supported",
    response_model=FormatsPublic,
    summary="Supported formats by extension",
    responses=problems(401),
)
def formats_supported() -> FormatsPublic:
    """Every extension with its format name and reader package (content decides, not the name)."""
    formats: dict[str, FormatPublic] = {}
    missing: set[str] = set()
    # Generic readers first, so a shared suffix (".tif") is named by its generic format.
    for info in reversed(supported_formats()):
        package = info.required_packages[0] if info.required_packages else "tifffile"
        if not info.available:
            missing.update(info.required_packages)
        for suffix in info.suffixes:
            formats.setdefault(
                suffix,
                FormatPublic(
                    name=info.name,
                    available=info.available,
                    required_package=package,
                    reader=info.reader,
                ),
            )
    if missing:
        names = " ".join(sorted(missing))
        message = f"Some formats need packages that are not installed: pip install {names}"
    else:
        message = "All required packages are installed"
    return FormatsPublic(formats=dict(sorted(formats.items())), message=message)
