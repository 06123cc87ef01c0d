"""Bio-Formats' sizes, pixel type, voxel size and every plane's checksum, for native-reader checks.

Why: MANIFEST.md of ``../shared/testdata-more`` gives Bio-Formats' plane (0, 0, 0)
only; a native reader must agree on every plane (a wrong section order keeps
plane 0 right and swaps the others). ``python scripts/bioformats_planes.py JAR
FILE...`` runs one JVM (through JPype, as ``bioformats_ref.py``) and prints
``{file: {...} | {"error": ...}}`` as JSON: series 0's sizes, pixel type, physical
sizes in µm, and for each (t, c, z) the sum, the maximum and the SHA-256 of the
plane as native-order bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
_TYPES = {
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "float": "f4",
    "double": "f8",
}


def planes(files: list[Path], jar: Path, timeout: float = 600) -> dict[str, Any]:
    """``{str(file): result}`` from one Bio-Formats JVM in a child process."""
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


def plane_digest(plane: np.ndarray) -> dict[str, Any]:
    """The checksum both sides compute: int64/float64 sum, maximum, SHA-256 of native bytes."""
    wide = plane.astype(np.float64 if plane.dtype.kind == "f" else np.int64)
    native = np.ascontiguousarray(plane, dtype=plane.dtype.newbyteorder("="))
    return {
        "sum": float(wide.sum()) if plane.dtype.kind == "f" else int(wide.sum()),
        "max": float(plane.max()) if plane.dtype.kind == "f" else int(plane.max()),
        "sha256": hashlib.sha256(native.tobytes()).hexdigest(),
    }


def _length_um(quantity: Any) -> float | None:
    if quantity is None:
        return None
    units = __import__("jpype").JClass("ome.units.UNITS")
    return float(quantity.value(units.MICROMETER).doubleValue())


def _child_main(jar: str, files: list[str]) -> None:
    import jpype  # type: ignore[import-untyped, unused-ignore]

    jpype.startJVM(classpath=[jar], convertStrings=True)
    jpype.JClass("loci.common.DebugTools").setRootLevel("ERROR")
    service = jpype.JClass("loci.common.services.ServiceFactory")().getInstance(
        jpype.JClass("loci.formats.services.OMEXMLService")
    )
    out: dict[str, Any] = {}
    for name in files:
        reader = jpype.JClass("loci.formats.ImageReader")()
        try:
            meta = service.createOMEXMLMetadata()
            reader.setMetadataStore(meta)
            reader.setId(name)
            reader.setSeries(0)
            dtype = np.dtype(
                _TYPES[
                    str(
                        jpype.JClass("loci.formats.FormatTools").getPixelTypeString(
                            reader.getPixelType()
                        )
                    )
                ]
            )
            dtype = dtype.newbyteorder("<" if reader.isLittleEndian() else ">")
            ny, nx = int(reader.getSizeY()), int(reader.getSizeX())
            result: dict[str, Any] = {
                "reader": str(reader.getReader().getClass().getSimpleName()),
                "sizes": {
                    "T": int(reader.getSizeT()),
                    "C": int(reader.getSizeC()),
                    "Z": int(reader.getSizeZ()),
                    "Y": ny,
                    "X": nx,
                },
                "dtype": dtype.newbyteorder("=").name,
                "physical_um": [
                    _length_um(meta.getPixelsPhysicalSizeX(0)),
                    _length_um(meta.getPixelsPhysicalSizeY(0)),
                    _length_um(meta.getPixelsPhysicalSizeZ(0)),
                ],
                "planes": {},
            }
            for index in range(int(reader.getImageCount())):
                z, c, t = (int(v) for v in reader.getZCTCoords(index))
                raw = bytes(memoryview(reader.openBytes(index)))
                plane = np.frombuffer(raw, dtype=dtype).reshape(ny, nx)
                result["planes"][f"{t},{c},{z}"] = plane_digest(plane)
            out[name] = result
        except Exception as exc:
            out[name] = {"error": str(exc)}
        finally:
            reader.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2:])
