#!/usr/bin/env bash
# Prints the path of libfaketime (Debian's `faketime` package), installing the package first when it
# is missing (needs root and the package mirror). The clock tests run processes on shifted clocks with
# it: LD_PRELOAD=<path> FAKETIME=+4s FAKETIME_DONT_FAKE_MONOTONIC=1 (timeouts keep their real length).
set -euo pipefail
find_lib() {
    local f
    for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
        [ -e "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}
if find_lib; then
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "faketime.sh: libfaketime is missing and installing it needs root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends faketime >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends faketime >/dev/null; } \
    || { echo "faketime.sh: apt-get install faketime failed" >&2; exit 1; }
find_lib || { echo "faketime.sh: faketime installed but libfaketime.so.1 not found" >&2; exit 1; }
