#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright may not download its own browser here).
# Installs it once when missing; prints why and carries on when it cannot (the tests then skip).
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure-chromium: /usr/bin/chromium missing and cannot apt-get install it; browser tests will skip" >&2
  exit 0
fi
echo "ensure-chromium: installing Debian's chromium for the browser tests"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || echo "ensure-chromium: apt-get install chromium failed; browser tests will skip" >&2
exit 0
