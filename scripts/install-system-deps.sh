#!/bin/sh
# Install the system tools pieceworks' drivers and tests run for real, from Debian's packages.
#
# Usage: install-system-deps.sh [COMMAND:PACKAGE ...]
# Default: qemu-img:qemu-utils (qcow2 driver: qemu-img, qemu-nbd), dot:graphviz
# (`pieceworks plan --format svg`), and for the rbd driver and its test cluster
# (scripts/ceph/run_ceph.py) ceph-mon, ceph-osd, ceph-common (ceph, rbd, monmaptool) and
# Debian's librados/librbd Python bindings (python3-rados, python3-rbd; `make
# ceph-bindings` links them into the venv). A PATH:PACKAGE pair whose PATH starts
# with / is checked as a file instead of a command. Idempotent: a command already on PATH is skipped.
# Runs apt-get update only when a package is not known to apt yet. Needs root (or
# sudo) when it has to install; CI and dev containers run as root.
set -eu

[ "$#" -gt 0 ] || set -- qemu-img:qemu-utils dot:graphviz \
    ceph-mon:ceph-mon ceph-osd:ceph-osd rbd:ceph-common monmaptool:ceph-common \
    /usr/lib/python3/dist-packages/rados:python3-rados \
    /usr/lib/python3/dist-packages/rbd:python3-rbd

missing=""
for pair in "$@"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    case "$cmd" in
        /*) if ls "$cmd".*.so >/dev/null 2>&1; then have=yes; else have=no; fi ;;
        *) if command -v "$cmd" >/dev/null 2>&1; then have=yes; else have=no; fi ;;
    esac
    if [ "$have" = yes ]; then
        echo "$cmd already installed"
    else
        case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    fi
done
[ -n "$missing" ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing:$missing, and apt-get is not available: install them yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "installing$missing needs root (or sudo)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
for pkg in $missing; do
    # apt-cache policy prints "Candidate: (none)" when the package lists lack the package.
    if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
        $SUDO apt-get update -q
        break
    fi
done
# shellcheck disable=SC2086 # one word per package
$SUDO apt-get install -y -q --no-install-recommends $missing
