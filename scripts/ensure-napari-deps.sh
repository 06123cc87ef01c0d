#!/usr/bin/env bash
# The napari test (tests/omezarr/test_napari.py) runs napari with its Qt wheel on an Xvfb
# display. The PyQt6 wheel bundles Qt but not the X, xcb and OpenGL (Mesa, software) libraries it
# loads, and Xvfb is Debian's. Installs the missing ones once. Locally, when it cannot, it says
# why and carries on (the test then skips); under CI=true that is an error, because a CI run
# that skips the only test of a real viewer proves nothing.
set -u
ci=false
case "${CI:-}" in 1|true|TRUE|True|yes) ci=true ;; esac
fail() {
  echo "ensure-napari-deps: $1" >&2
  if [ "$ci" = true ]; then exit 1; fi
  exit 0
}
packages=(
  xvfb
  libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri
  libfontconfig1 libfreetype6 libdbus-1-3 libglib2.0-0
  libx11-xcb1 libxcb-glx0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-sync1 libxcb-xfixes0 libxcb-xkb1 libxcb-cursor0
  libxkbcommon0 libxkbcommon-x11-0
)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  fail "missing ${missing[*]} and cannot apt-get install them; the napari test will skip"
fi
echo "ensure-napari-deps: installing ${missing[*]} for the napari test"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
  || fail "apt-get install ${missing[*]} failed; the napari test will skip"
command -v Xvfb >/dev/null || fail "xvfb installed but Xvfb is not on PATH"
exit 0
