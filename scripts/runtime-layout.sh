#!/usr/bin/env bash
# Assembles the container image's runtime layout from locally built binaries:
#
#   DEST/usr/local/bin/worker-api
#   DEST/usr/local/bin/coordinator
#   DEST/usr/local/bin/spotcheck-sim
#
# which is everything the image adds to its base (see the Dockerfile): the
# binaries need no data files, configuration files or writable directories.
#
#   scripts/runtime-layout.sh DEST                   # from target/release
#   scripts/runtime-layout.sh target/debug DEST      # from another profile directory
#
# Files are copied with mode 0555, directories get 0755; run as root, the tree
# is owned by root, as in the image, so a non-root user can run but not change it.
set -euo pipefail

usage() {
    echo "usage: $0 [PROFILE_DIR] DEST   (PROFILE_DIR defaults to target/release)" >&2
    exit 2
}

case $# in
    1) profile="$(cd "$(dirname "$0")/.." && pwd)/target/release"; dest=$1 ;;
    2) profile=$1; dest=$2 ;;
    *) usage ;;
esac

binaries=(worker-api coordinator spotcheck-sim)
for bin in "${binaries[@]}"; do
    if [[ ! -x "$profile/$bin" ]]; then
        echo "$profile/$bin is missing: build it first (cargo build --release --bins)" >&2
        exit 1
    fi
done

install -d -m 0755 "$dest/usr/local/bin"
for bin in "${binaries[@]}"; do
    install -m 0555 "$profile/$bin" "$dest/usr/local/bin/$bin"
done
if [[ $(id -u) -eq 0 ]]; then
    chown -R 0:0 "$dest/usr"
fi
echo "runtime layout in $dest/usr/local/bin: ${binaries[*]}"
