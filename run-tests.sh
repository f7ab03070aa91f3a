#!/bin/sh
# Install everything the test suite needs, then run all of it.
#
#   ./run-tests.sh [pytest arguments]
#
# System tools come from Debian's apt (Postfix's smtp-source, swaks, HAProxy,
# OpenSSL, Node.js for the nodemailer client); Python packages go into a fresh
# virtualenv (.venv-test) where smtpsession itself is installed from this
# checkout as a regular (non-editable) package, so the tests exercise what
# users install.  Works as root or with sudo.
set -eu
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=""
command -v smtp-source >/dev/null 2>&1 || need="$need postfix"
command -v swaks >/dev/null 2>&1 || need="$need swaks"
# swaks --tls needs Net::SSLeay, only a "Recommends" of the swaks package.
perl -MNet::SSLeay -e 1 >/dev/null 2>&1 || need="$need libnet-ssleay-perl"
command -v haproxy >/dev/null 2>&1 || need="$need haproxy"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
if [ -n "$need" ]; then
    echo "run-tests: installing$need"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi
# Postfix is installed for its test tools only; its mail daemon must not run.
if $SUDO postfix status >/dev/null 2>&1; then $SUDO postfix stop >/dev/null 2>&1 || true; fi

VENV=${SMTPSESSION_TEST_VENV:-.venv-test}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q ".[test,docs,dev]"

# The nodemailer client used by the interoperability tests.
if [ ! -d tests/js/node_modules/nodemailer ]; then
    (cd tests/js && npm install --no-audit --no-fund --silent)
fi

exec "$VENV/bin/pytest" "$@"
