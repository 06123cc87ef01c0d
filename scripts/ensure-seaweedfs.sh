#!/usr/bin/env bash
# The object-storage tests run against a real S3 server: SeaweedFS (`weed server -s3`) from
# Debian's seaweedfs-bin package, installed once when missing. When the package is not
# available (it is not packaged for Debian 12 "bookworm"), the tests use moto's S3 server
# from the dev extra instead and say so; this script only prints why and carries on.
set -u
if command -v weed >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure-seaweedfs: weed missing and cannot apt-get install seaweedfs-bin; S3 tests use moto's server" >&2
  exit 0
fi
apt-get update -qq >/dev/null 2>&1 || true
if apt-cache show seaweedfs-bin >/dev/null 2>&1; then
  echo "ensure-seaweedfs: installing Debian's seaweedfs-bin for the S3 tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq seaweedfs-bin >/dev/null \
    || echo "ensure-seaweedfs: apt-get install seaweedfs-bin failed; S3 tests use moto's server" >&2
else
  echo "ensure-seaweedfs: seaweedfs-bin is not packaged for $(. /etc/os-release; echo "$PRETTY_NAME"); S3 tests use moto's server" >&2
fi
exit 0
