#!/bin/sh
# Install smtpsession from SOURCE_DIR into the venv PEERS/VARIANT, reinstalled on every run:
# VARIANT ending in -mypyc gets the core compiled by mypyc (SMTPSESSION_MYPYC=1, the default
# where there is a compiler), any other the pure Python build (SMTPSESSION_MYPYC=0).
# usage: install-variant.sh VARIANT SOURCE_DIR      env: PEERS (default .peers)
set -e
peers=${PEERS:-.peers}
[ -x "$peers/$1/bin/python" ] || python3 -m venv "$peers/$1"
"$peers/$1/bin/pip" install -q "$2"
mypyc=0; case $1 in *-mypyc) mypyc=1 ;; esac
SMTPSESSION_MYPYC=$mypyc "$peers/$1/bin/pip" install -q --force-reinstall --no-deps "$2"
