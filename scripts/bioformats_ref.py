"""Bio-Formats as a reference reader: OME-XML of many files from one JVM, and its channels.

Why a child process: the JVM (through JPype) starts once per batch, never inside the
caller (a JVM cannot be restarted in a process, and a test run must not carry one);
``python scripts/bioformats_ref.py JAR FILE...`` prints ``{file: {"xml": ...} | {"error": ...}}``
as JSON. The jar and a Java runtime come from ``scripts/bioformats-jar.sh`` (cached
outside the repository). What is read from the OME-XML is what our metadata model
compares with: per Image, per Channel the name, fluorophore, excitation and
emission wavelengths (nm), illumination type and the first plane's exposure (ms).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Exit code of bioformats-jar.sh when a prerequisite is missing outside CI (callers skip).
MISSING = 2
_LENGTH_TO_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "pm": 1e-3, "Å": 0.1, "m": 1e9}
_TIME_TO_MS = {"s": 1e3, "ms": 1.0, "µs": 1e-3, "us": 1e-3, "ns": 1e-6, "min": 6e4}


class BioFormatsUnavailable(RuntimeError):
    """Java or the Bio-Formats jar is missing and could not be installed."""


def jar_path() -> Path:
    """The cached ``bioformats_package.jar`` ($ZSTACK_BIOFORMATS_JAR, else installed by the script)."""
    configured = os.environ.get("ZSTACK_BIOFORMATS_JAR")
    if configured:
        return Path(configured)
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    done = subprocess.run(  # noqa: S603
        ["bash", str(HERE / "bioformats-jar.sh")],  # noqa: S607
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise BioFormatsUnavailable(done.stderr.strip() or f"exit {done.returncode}")
    return Path(done.stdout.strip().splitlines()[-1])


def omexml(files: list[Path], jar: Path | None = None, timeout: float = 600) -> dict[str, Any]:
    """``{str(file): {"xml": OME-XML} | {"error": message}}`` from one Bio-Formats JVM."""
    jar = jar or jar_path()
    done = subprocess.run(  # noqa: S603
        [sys.executable, str(Path(__file__).resolve()), str(jar), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        msg = f"Bio-Formats child failed ({done.returncode}): {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@dataclass(frozen=True)
class BfChannel:
    """One OME Channel as Bio-Formats wrote it (None where it wrote nothing)."""

    name: str | None
    fluorophore: str | None
    excitation_nm: float | None
    emission_nm: float | None
    illumination: str | None
    exposure_ms: float | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _quantity(element: ET.Element, attribute: str, table: dict[str, float]) -> float | None:
    value = element.get(attribute)
    if value is None:
        return None
    default = "nm" if table is _LENGTH_TO_NM else "s"
    factor = table.get(element.get(f"{attribute}Unit", default))
    return None if factor is None else round(float(value) * factor, 6)


def images(xml: str) -> list[list[BfChannel]]:
    """Per OME Image, its channels."""
    root = ET.fromstring(xml)  # noqa: S314  (Bio-Formats' own output)
    result = []
    for image in _children(root, "Image"):
        pixels = _children(image, "Pixels")[0]
        exposures: dict[int, float | None] = {}
        for plane in _children(pixels, "Plane"):
            c = int(plane.get("TheC", "0"))
            if c not in exposures:
                exposures[c] = _quantity(plane, "ExposureTime", _TIME_TO_MS)
        channels = []
        for c, channel in enumerate(_children(pixels, "Channel")):
            channels.append(
                BfChannel(
                    name=channel.get("Name") or None,
                    fluorophore=channel.get("Fluor") or None,
                    excitation_nm=_quantity(channel, "ExcitationWavelength", _LENGTH_TO_NM),
                    emission_nm=_quantity(channel, "EmissionWavelength", _LENGTH_TO_NM),
                    illumination=channel.get("IlluminationType") or None,
                    exposure_ms=exposures.get(c),
                )
            )
        result.append(channels)
    return result


def _child_main(jar: str, files: list[str]) -> None:
    """Runs in the child: one JVM, each file through ImageReader into OME-XML."""
    import jpype  # type: ignore[import-untyped, unused-ignore]

    jpype.startJVM(classpath=[jar], convertStrings=True)
    debug = jpype.JClass("loci.common.DebugTools")
    debug.setRootLevel("ERROR")
    service = jpype.JClass("loci.common.services.ServiceFactory")().getInstance(
        jpype.JClass("loci.formats.services.OMEXMLService")
    )
    reader_class = jpype.JClass("loci.formats.ImageReader")
    out: dict[str, Any] = {}
    for name in files:
        reader = reader_class()
        reader.setFlattenedResolutions(False)  # a pyramid is one image's levels, as ours
        try:
            meta = service.createOMEXMLMetadata()
            reader.setMetadataStore(meta)
            reader.setId(name)
            out[name] = {"xml": str(service.getOMEXML(meta))}
        except Exception as exc:
            out[name] = {"error": str(exc)}
        finally:
            reader.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2:])
