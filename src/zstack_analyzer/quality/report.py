"""Quality of many files as table rows (``zstack quality PATH... --csv OUT``), no server.

Why a library module: the CLI only parses arguments and writes the file; a
notebook gets the same rows. One row per file, scene and channel; a file that
cannot be measured gives one row whose ``error`` says why, so one bad file
never stops a folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import UnsupportedFormatError, ZstackError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.quality.stack import SceneQuality

__all__ = ["CSV_FIELDS", "quality_rows", "scene_rows"]

#: Columns of the CSV, in order.
CSV_FIELDS = (
    "path",
    "scene",
    "channel",
    "name",
    "best_focus_z",
    "focus_edge",
    "size_z",
    "size_t",
    "saturated_fraction",
    "min_fraction",
    "snr",
    "bleaching_rate",
    "z_falloff_rate",
    "focus_best",
    "mean",
    "error",
)


def scene_rows(path: str, quality: SceneQuality) -> list[dict[str, Any]]:
    """One row per channel of ``quality``."""
    rows = []
    for channel in quality.channels:
        rows.append(
            {
                "path": path,
                "scene": quality.scene,
                "channel": channel.channel,
                "name": channel.name or "",
                "best_focus_z": channel.best_focus_z,
                "focus_edge": channel.focus_edge,
                "size_z": quality.size_z,
                "size_t": quality.size_t,
                "saturated_fraction": channel.saturated_fraction,
                "min_fraction": channel.min_fraction,
                "snr": channel.snr,
                "bleaching_rate": channel.bleaching_rate,
                "z_falloff_rate": channel.z_falloff_rate,
                "focus_best": channel.focus[channel.best_focus_z],
                "mean": sum(channel.intensity_t) / len(channel.intensity_t),
                "error": "",
            }
        )
    return rows


def quality_rows(
    paths: Iterable[str | Path],
    *,
    scenes: list[int] | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows for every image file under ``paths`` (folders walked; unknown files skipped)."""
    from zstack_analyzer.batch.walk import FileEntry, folder_format_suffixes, walk
    from zstack_analyzer.quality.read import measure_file

    for item in walk(paths, dir_suffixes=folder_format_suffixes()):
        if not isinstance(item, FileEntry):
            yield _error_row(item.path, item.reason)
            continue
        try:
            measured = measure_file(item.path, scenes=scenes, limits=limits)
        except UnsupportedFormatError:
            continue
        except (ZstackError, OSError, ValueError) as exc:
            yield _error_row(item.path, str(exc) or type(exc).__name__)
            continue
        for quality in measured:
            yield from scene_rows(item.path, quality)


def _error_row(path: str, error: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CSV_FIELDS, "")
    row.update(path=path, error=error)
    return row
