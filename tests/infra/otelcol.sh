#!/usr/bin/env bash
# The stock OpenTelemetry Collector, built from the Go module proxy with the OpenTelemetry Collector
# Builder (ocb), for the tests that put it in front of or behind Kafka. Needs go (1.24+); nothing else.
#
#   tests/infra/otelcol.sh build    build (once) and print the binary's path on stdout
#   tests/infra/otelcol.sh path     print the binary's path when it is built, else exit 1
#
# One release for every component: collector core v0.165.0 (otlpreceiver, batchprocessor,
# debugexporter; ocb itself) with contrib v0.165.1 (kafkareceiver, kafkaexporter), the contrib
# patch release that goes with that core. The binary is cached in
# ${XDG_CACHE_HOME:-~/.cache}/execscope/otelcol-<core version>/ and rebuilt only when the manifest
# below changes (its hash is the stamp); Go's module and build caches are the user's usual ones.
# A cold build (ocb, then the collector's ~300 modules) takes about two minutes on two cores.
# Concurrent builds take turns (flock); a build lands under a temporary name and is renamed when done.
set -euo pipefail

CORE_VERSION="0.165.0"
CONTRIB_VERSION="0.165.1"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/execscope/otelcol-$CORE_VERSION"
NAME="otelcol-execscope"
BUILD_TIMEOUT="${EXECSCOPE_OTELCOL_BUILD_TIMEOUT:-1200}"

die() { echo "otelcol.sh: $*" >&2; exit 1; }

manifest() {  # the ocb manifest; output_path is filled in per build
    cat <<EOF
dist:
  name: $NAME
  description: Stock OpenTelemetry Collector components for execscope's tests
  version: $CORE_VERSION
  output_path: $1
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$CORE_VERSION
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kafkareceiver v$CONTRIB_VERSION
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v$CORE_VERSION
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v$CORE_VERSION
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter v$CONTRIB_VERSION
EOF
}

stamp() { manifest OUT | sha256sum | cut -c1-16; }

binary() { echo "$CACHE/$NAME"; }

built() { [ -x "$(binary)" ] && [ "$(cat "$CACHE/.stamp" 2>/dev/null)" = "$(stamp)" ]; }

build() {
    if built; then
        binary
        return 0
    fi
    command -v go >/dev/null || die "go not found (the collector is built from the Go module proxy with ocb)"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    if ! built; then
        local work="$CACHE/build.tmp.$$" started=$SECONDS
        rm -rf "$work"
        mkdir -p "$work"
        echo "otelcol.sh: building the collector (ocb v$CORE_VERSION, contrib v$CONTRIB_VERSION) into $CACHE" >&2
        # the static binary (no cgo) also runs in the Debian chroot of tests/infra/pythons.sh
        export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
        GOBIN="$work/bin" timeout "$BUILD_TIMEOUT" go install "go.opentelemetry.io/collector/cmd/builder@v$CORE_VERSION" \
            >"$work/ocb-install.log" 2>&1 \
            || { tail -n 30 "$work/ocb-install.log" >&2; die "go install of ocb v$CORE_VERSION failed (log: $work/ocb-install.log)"; }
        manifest "$work/dist" >"$work/manifest.yaml"
        timeout "$BUILD_TIMEOUT" "$work/bin/builder" --config "$work/manifest.yaml" >"$work/build.log" 2>&1 \
            || { tail -n 40 "$work/build.log" >&2; die "ocb failed to build the collector (log: $work/build.log)"; }
        "$work/dist/$NAME" --version >/dev/null 2>&1 || die "the built collector does not run ($work/dist/$NAME)"
        mv -f "$work/dist/$NAME" "$(binary).tmp"
        mv -f "$(binary).tmp" "$(binary)"
        cp "$work/manifest.yaml" "$CACHE/manifest.yaml"
        stamp >"$CACHE/.stamp"
        rm -rf "$work"
        echo "otelcol.sh: built in $((SECONDS - started)) s" >&2
    fi
    flock -u 9
    binary
}

case "${1:-}" in
    build) build ;;
    path) built || die "not built yet (tests/infra/otelcol.sh build)"; binary ;;
    *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
