#!/usr/bin/env bash
# The LDAP login tests bind against a real OpenLDAP: Debian's slapd, which the tests start
# themselves on loopback with a temp config (tests/ldapserver.py); ldapadd (ldap-utils)
# loads their entries. Installs both once when missing. Locally, when it cannot, it says
# why and carries on (the LDAP tests then skip); under CI=true a missing slapd is an error,
# because a CI run that skips the only tests of the directory login proves nothing.
# The package's own service is never started here (containers deny it; tests need none).
set -u
ci=false
case "${CI:-}" in 1|true|TRUE|True|yes) ci=true ;; esac
fail() {
  echo "ensure-slapd: $1" >&2
  if [ "$ci" = true ]; then exit 1; fi
  exit 0
}
if [ -x /usr/sbin/slapd ] && command -v ldapadd >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  fail "slapd/ldapadd missing and cannot apt-get install them; LDAP tests will skip"
fi
echo "ensure-slapd: installing Debian's slapd and ldap-utils for the LDAP tests"
(apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    slapd ldap-utils >/dev/null) \
  || fail "apt-get install slapd ldap-utils failed; LDAP tests will skip"
[ -x /usr/sbin/slapd ] || fail "slapd installed but /usr/sbin/slapd is missing"
command -v ldapadd >/dev/null || fail "ldap-utils installed but ldapadd is missing"
exit 0
