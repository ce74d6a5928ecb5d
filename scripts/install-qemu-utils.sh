#!/bin/sh
# Install qemu-img (Debian/Ubuntu package qemu-utils) for the qcow2 driver and its tests.
#
# Idempotent: does nothing when qemu-img is already on PATH. Runs apt-get update only
# when the package is not known to apt yet (an empty package cache, as in fresh
# containers). Needs root (or sudo) when it has to install; CI and dev containers run as root.
set -eu

if command -v qemu-img >/dev/null 2>&1; then
    echo "qemu-img already installed: $(qemu-img --version | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "qemu-img is missing and apt-get is not available: install qemu-img (qemu-utils) yourself" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "qemu-img is missing and installing it needs root (or sudo)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# apt-cache policy prints "Candidate: (none)" when the package lists lack qemu-utils.
if ! apt-cache policy qemu-utils 2>/dev/null | grep -q 'Candidate: [^(]'; then
    $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends qemu-utils

qemu-img --version | head -n 1
