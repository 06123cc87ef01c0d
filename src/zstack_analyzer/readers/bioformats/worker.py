"""The Bio-Formats worker: a child process that hosts one JVM and answers requests.

Why a process of its own: a JVM cannot be stopped or restarted inside a
process, Bio-Formats can loop forever or exhaust its heap on a hostile file,
and none of that may touch the server. The parent (:mod:`.pool`) talks to this
process over a socket with :mod:`multiprocessing.connection` framing, as JSON
headers plus raw pixel bytes (never pickle, so even a compromised worker cannot
run code in the parent). The JVM runs with ``-XX:+ExitOnOutOfMemoryError``:
a heap exhausted by one file ends this worker (exit code 3), the parent
restarts it and tells the caller :class:`~zstack_analyzer.errors.LimitExceededError`.

The pool runs it under its module name without importing the package (see
``pool._LAUNCHER``); ``python worker.py FD JAR HEAP_MB`` runs it too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

#: Exit code the JVM uses for ``-XX:+ExitOnOutOfMemoryError``.
OOM_EXIT_CODE = 3
#: Open Bio-Formats readers a worker keeps (setId is the slow part of a read).
_OPEN_READERS = 4

#: Bio-Formats pixel type -> numpy dtype name.
_PIXEL_TYPES = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "float": "float32",
    "double": "float64",
    "bit": "uint8",
}


class _Worker:
    """One JVM with a few open readers, keyed by path and file identity."""

    def __init__(self, jar: str, heap_mb: int) -> None:
        import jpype  # type: ignore[import-untyped]

        jpype.startJVM(
            f"-Xmx{heap_mb}m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Xss4m",
            classpath=[jar],
            convertStrings=False,
        )
        self.jpype = jpype
        self.classes = {
            name: jpype.JClass(name)
            for name in (
                "loci.formats.ImageReader",
                "loci.formats.MetadataTools",
                "loci.formats.FormatTools",
                "loci.common.DebugTools",
                "loci.formats.UnknownFormatException",
                "loci.formats.FormatException",
                "java.io.IOException",
            )
        }
        self.classes["loci.common.DebugTools"].setRootLevel("OFF")
        self.readers: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        # Load every reader class now, while starting: the first request is then as fast as
        # the rest and its deadline measures the file, not the JVM's class loading.
        self.classes["loci.formats.ImageReader"]().getReaders()
        self.classes["loci.formats.MetadataTools"].createOMEXMLMetadata()

    # ------------------------------------------------------------------ readers
    def _reader(self, path: str) -> Any:
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        found = self.readers.get(key)
        if found is not None:
            self.readers.move_to_end(key)
            return found
        for stale in [k for k in self.readers if k[0] == path]:
            self.readers.pop(stale).close()
        reader = self.classes["loci.formats.ImageReader"]()
        reader.setFlattenedResolutions(False)
        reader.setMetadataStore(self.classes["loci.formats.MetadataTools"].createOMEXMLMetadata())
        try:
            reader.setId(path)
        except BaseException:
            reader.close()
            raise
        self.readers[key] = reader
        while len(self.readers) > _OPEN_READERS:
            self.readers.popitem(last=False)[1].close()
        return reader

    def open(self, path: str) -> dict[str, Any]:
        """Sizes of every series, the OME-XML, the reader's name and the files it used."""
        reader = self._reader(path)
        tools = self.classes["loci.formats.FormatTools"]
        series = []
        for index in range(int(reader.getSeriesCount())):
            reader.setSeries(index)
            pixel_type = str(tools.getPixelTypeString(reader.getPixelType()))
            series.append(
                {
                    "size_x": int(reader.getSizeX()),
                    "size_y": int(reader.getSizeY()),
                    "size_z": int(reader.getSizeZ()),
                    "size_c": int(reader.getEffectiveSizeC()),
                    "size_t": int(reader.getSizeT()),
                    "samples": int(reader.getRGBChannelCount()),
                    "pixel_type": pixel_type,
                    "dtype": _PIXEL_TYPES.get(pixel_type, pixel_type),
                    "little_endian": bool(reader.isLittleEndian()),
                    "interleaved": bool(reader.isInterleaved()),
                    "tile_x": int(reader.getOptimalTileWidth()),
                    "tile_y": int(reader.getOptimalTileHeight()),
                    "resolutions": int(reader.getResolutionCount()),
                }
            )
        reader.setSeries(0)
        store = reader.getMetadataStore()
        return {
            "format": str(reader.getFormat()),
            "reader": str(reader.getReader().getClass().getSimpleName()),
            "used_files": [str(f) for f in reader.getUsedFiles(False)],
            "series": series,
            "ome_xml": str(store.dumpXML()),
        }

    def read(self, path: str, series: int, t: int, c: int, z: int, region: list[int]) -> memoryview:
        """Bytes of one plane's rectangle ``[x, y, w, h]`` as Bio-Formats decodes them."""
        reader = self._reader(path)
        reader.setSeries(series)
        index = int(reader.getIndex(z, c, t))
        x, y, w, h = region
        data = reader.openBytes(index, x, y, w, h)
        return memoryview(data)

    def formats(self) -> list[dict[str, Any]]:
        """Every reader Bio-Formats has, in its own order, with its suffixes."""
        out = []
        for reader in self.classes["loci.formats.ImageReader"]().getReaders():
            out.append(
                {
                    "reader": str(reader.getClass().getSimpleName()),
                    "format": str(reader.getFormat()),
                    "suffixes": [str(s) for s in reader.getSuffixes()],
                }
            )
        return out

    def version(self) -> str:
        """The Bio-Formats version of the jar."""
        return str(self.jpype.JClass("loci.formats.FormatTools").VERSION)

    # ------------------------------------------------------------------ errors
    def classify(self, exc: BaseException) -> tuple[str, str]:
        """(kind, message) of an exception: ``unsupported``, ``corrupt`` or ``missing``."""
        message = str(exc) or type(exc).__name__
        if isinstance(exc, FileNotFoundError):
            return "missing", message
        java_name = ""
        java_class = getattr(exc, "getClass", None)
        if java_class is not None:
            java_name = str(java_class().getName())
            message = f"{java_name}: {exc.getMessage()}"  # type: ignore[attr-defined]
        if java_name == "loci.formats.UnknownFormatException":
            return "unsupported", message
        if java_name.endswith("FileNotFoundException"):
            return "missing", message
        return "corrupt", message


def serve(conn: Connection, worker: _Worker) -> None:
    """Answer requests until the parent closes the socket."""
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        op = request.get("op")
        payload: memoryview | None = None
        try:
            if op == "open":
                answer: dict[str, Any] = {"ok": True, "result": worker.open(request["path"])}
            elif op == "read":
                payload = worker.read(
                    request["path"],
                    request["series"],
                    request["t"],
                    request["c"],
                    request["z"],
                    request["region"],
                )
                answer = {"ok": True, "nbytes": len(payload)}
            elif op == "formats":
                answer = {"ok": True, "result": worker.formats()}
            elif op == "version":
                answer = {"ok": True, "result": worker.version()}
            elif op == "ping":
                answer = {"ok": True, "result": os.getpid()}
            else:
                answer = {"ok": False, "kind": "protocol", "message": f"unknown op {op!r}"}
        except Exception as exc:  # a Java exception reaches Python as an Exception
            kind, message = worker.classify(exc)
            answer = {"ok": False, "kind": kind, "message": message}
            payload = None
        conn.send_bytes(json.dumps(answer).encode("utf-8"))
        if payload is not None:
            conn.send_bytes(payload)


def main(argv: list[str]) -> int:
    """Start the JVM, say ``ready`` and serve."""
    fd, jar, heap_mb = int(argv[0]), argv[1], int(argv[2])
    sock = socket.socket(fileno=fd)
    conn = Connection(sock.detach())
    try:
        worker = _Worker(jar, heap_mb)
    except Exception as exc:
        conn.send_bytes(json.dumps({"ok": False, "kind": "start", "message": str(exc)}).encode())
        return 1
    conn.send_bytes(json.dumps({"ok": True, "result": "ready"}).encode())
    serve(conn, worker)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
