#!/bin/sh
# Install qemu-img and qemu-nbd (Debian package qemu-utils) for the qcow2 driver.
exec "$(dirname "$0")/install-system-deps.sh" qemu-img:qemu-utils
