#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright may not download its own browser here).
# Installs it once when missing. Locally, when it cannot, it says why and carries on (the
# browser tests then skip); under CI=true a missing chromium is an error, because a CI run
# that skips the only tests catching a wrong plane in the viewer proves nothing.
set -u
ci=false
case "${CI:-}" in 1|true|TRUE|True|yes) ci=true ;; esac
fail() {
  echo "ensure-chromium: $1" >&2
  if [ "$ci" = true ]; then exit 1; fi
  exit 0
}
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  fail "/usr/bin/chromium missing and cannot apt-get install it; browser tests will skip"
fi
echo "ensure-chromium: installing Debian's chromium for the browser tests"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || fail "apt-get install chromium failed; browser tests will skip"
[ -x /usr/bin/chromium ] || fail "chromium installed but /usr/bin/chromium is missing"
exit 0
