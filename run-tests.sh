#!/bin/sh
# Install everything the test suite needs, then run all of it.
#
#   ./run-tests.sh [pytest arguments]
#
# System tools come from Debian's apt (Postfix's smtp-source, swaks, HAProxy,
# OpenSSL, Node.js for the nodemailer client, RabbitMQ and Dovecot's LMTP
# server, which the tests start themselves on 127.0.0.1, Go and go-smtp);
# Python packages go into a fresh
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
[ -x /usr/sbin/rabbitmq-server ] || need="$need rabbitmq-server"
[ -x /usr/lib/dovecot/lmtp ] || need="$need dovecot-core dovecot-lmtpd"
# go-smtp (emersion), a peer the conformance checker is run against: Debian's
# package, built by the test with Debian's Go.
command -v go >/dev/null 2>&1 || need="$need golang-go"
[ -d /usr/share/gocode/src/github.com/emersion/go-smtp ] || need="$need golang-github-emersion-go-smtp-dev"
[ -d /usr/share/gocode/src/github.com/emersion/go-sasl ] || need="$need golang-github-emersion-go-sasl-dev"
if [ -n "$need" ]; then
    echo "run-tests: installing$need"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi
# Postfix is installed for its test tools only; its mail daemon must not run.
if $SUDO postfix status >/dev/null 2>&1; then $SUDO postfix stop >/dev/null 2>&1 || true; fi
# Likewise RabbitMQ and Dovecot: the tests start their own, on 127.0.0.1 and
# ports of their own; a system instance the package may have started is left
# alone (nothing here stops what it did not start).

VENV=${SMTPSESSION_TEST_VENV:-.venv-test}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
VENV=$(cd "$VENV" && pwd)  # absolute: the compiled run below works in another directory
"$VENV/bin/python" -m pip install -q --upgrade pip
# Pure Python here (the default would compile the core where it can): the
# compiled core gets its own run below, and tests/integration/test_wheel.py
# builds the default wheel.
SMTPSESSION_MYPYC=0 "$VENV/bin/python" -m pip install -q ".[test,docs,dev]"

# The nodemailer client used by the interoperability tests, and nodemailer's
# smtp-server (a peer of the conformance checker).
if [ ! -d tests/js/node_modules/nodemailer ] || [ ! -d tests/js/node_modules/smtp-server ]; then
    (cd tests/js && npm install --no-audit --no-fund --silent)
fi

status=0
"$VENV/bin/pytest" "$@" || status=$?

# The compiled core (SMTPSESSION_MYPYC=1, see setup.py): the same
# suite again, on a copy of this checkout whose core is built with mypyc, so
# both builds users can install are tested.  SMTPSESSION_TEST_COMPILED=0
# skips this second run.
if [ "${SMTPSESSION_TEST_COMPILED:-1}" != 0 ]; then
    copy=$(mktemp -d)
    trap 'rm -rf "$copy"' EXIT
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z | xargs -0 cp --parents -t "$copy"
    else
        tar -c --exclude=./.git --exclude="./$VENV" --exclude=./tests/js/node_modules . \
            | tar -x -C "$copy"
    fi
    ln -s "$PWD/tests/js/node_modules" "$copy/tests/js/node_modules"
    echo "run-tests: building the compiled core (mypyc) and running the suite on it"
    if (cd "$copy" && SMTPSESSION_MYPYC=1 "$VENV/bin/python" setup.py -q build_ext --inplace \
            >build.log 2>&1); then
        (cd "$copy" && SMTPSESSION_EXPECT_COMPILED=1 "$VENV/bin/pytest" "$@") || status=$?
    else
        cat "$copy/build.log"
        echo "run-tests: the compiled build failed" >&2
        status=1
    fi
fi
exit "$status"
