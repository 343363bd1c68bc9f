#!/usr/bin/env bash
# The suite on the CPythons of Debian testing (3.13 and 3.14 by default), in a cached chroot.
# Needs root (debootstrap, chroot, bind mounts) and Debian's package mirror; installs debootstrap
# itself when it is missing.
#
#   tests/infra/pythons.sh [VERSION ...] [-- PYTEST_ARGS ...]
#       run `python -m pytest PYTEST_ARGS` (default: -q -n 2 tests) on each VERSION (default: 3.13 3.14)
#       in its own venv of the root holding an editable install of this checkout (`pip install -e '.[dev]'`);
#       prints one summary line per version; exits 1 when any suite fails
#   tests/infra/pythons.sh exec VERSION [--] COMMAND ...
#       run COMMAND at the checkout in VERSION's venv (PATH starts with it), with the same broker
#   tests/infra/pythons.sh build      build or update the root only
#   tests/infra/pythons.sh clean      delete the root (refused while anything is mounted in it)
#
# The root (EXECSCOPE_PYTHONS_ROOT, default ~/.cache/execscope/forky-root) is a
# `debootstrap --variant=minbase` of Debian testing (the sid script) from the mirror the host's apt
# uses (or EXECSCOPE_PYTHONS_MIRROR), with pythonX.Y(-dev, -venv) of each VERSION asked for, gcc,
# make, tmux, e2fsprogs and ca-certificates. It is built once; a later run only adds the packages a
# new VERSION needs (EXECSCOPE_PYTHONS_UPGRADE=1: apt-get upgrade it first). Venvs live in the root
# (/opt/execscope/venv-X.Y) and are reinstalled only when pyproject.toml or a C source changed, or a
# compiled extension went missing; pip's cache stays in the root.
#
# Each run copies the host's resolver config, CA bundle and certificates, apt fetch settings and pip
# configuration (config files, PIP_* variables and the local paths they name) into the root, mounts
# /proc, binds /dev, /dev/pts, /dev/shm and (read-only) /sys with its cgroup mounts, and binds this
# checkout at /src/execscope; everything is unmounted on exit. The chroot shares the host's network,
# so the Kafka tests use a broker started here on the host (tests/infra/kafka.sh, when java and mvn
# are present) through EXECSCOPE_TEST_KAFKA; the tests that stop and restart it ask this script to,
# through the directory named by EXECSCOPE_TEST_KAFKA_CONTROL (see tests/integration/kafka_broker.py).
# The stock OpenTelemetry Collector (static, no cgo) is built on the host by tests/infra/otelcol.sh
# (when go is there) and copied into the root, named by EXECSCOPE_TEST_OTELCOL.
set -euo pipefail

HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOT="${EXECSCOPE_PYTHONS_ROOT:-$HOME/.cache/execscope/forky-root}"
SUITE="${EXECSCOPE_PYTHONS_SUITE:-testing}"
SRC=/src/execscope          # the checkout, inside the root
VENVS=/opt/execscope        # the venvs and helper script, inside the root
CONTROL=/run/execscope-kafka-control  # broker requests from the tests, inside the root
TLS_IN_ROOT=/run/execscope-kafka-tls  # the broker's CA and SASL user (its secured listeners), inside the root
BASE_PACKAGES="gcc make libc6-dev ca-certificates tmux e2fsprogs faketime"
DEFAULT_VERSIONS="3.13 3.14"

log() { echo "pythons.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------- host

host_mirror() {  # the first Debian (not -security) mirror of the host's apt sources
    [ -n "${EXECSCOPE_PYTHONS_MIRROR:-}" ] && { echo "$EXECSCOPE_PYTHONS_MIRROR"; return; }
    local url
    url="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}//p' \
        | tr ' ' '\n' | grep -E '^(https?|file)://.*/debian/?$' | head -n 1 || true)"
    echo "${url:-http://deb.debian.org/debian}"
}

need_root_tools() {
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
    if ! command -v debootstrap >/dev/null || [ ! -e /usr/share/debootstrap/scripts/sid ]; then
        log "installing debootstrap"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q debootstrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
            || die "apt-get install debootstrap failed"
    fi
}

# ------------------------------------------------------------------------------------------- mounts

MOUNTED=()

mount_in() {  # mount_in TARGET-INSIDE-ROOT ARGS...: mount, remembered for cleanup
    local target="$ROOT$1"
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTED+=("$target")
}

unmount_all() {
    local i target
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        target="${MOUNTED[$i]}"
        umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || log "could not unmount $target"
    done
    MOUNTED=()
}

mounts_under_root() {  # whatever is mounted in the root now (a killed run may have left some)
    local real
    real="$(realpath -m "$ROOT")"
    awk -v r="$real" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r
}

unmount_stale() {
    local target
    for target in $(mounts_under_root); do
        log "unmounting $target (left by an earlier run)"
        umount "$target" 2>/dev/null || umount -l "$target"
    done
}

# ------------------------------------------------------------------------------------------ the root

in_root() {  # run a command in the root with a clean environment (plus "${ROOT_ENV[@]}")
    chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${ROOT_ENV[@]}" "$@"
}
ROOT_ENV=()

bootstrap() {
    [ -f "$ROOT/.execscope-root" ] && return 0
    local mirror partial="$ROOT.partial"
    mirror="$(host_mirror)"
    for target in $(ROOT="$partial" mounts_under_root); do umount "$target" 2>/dev/null || umount -l "$target"; done
    rm -rf --one-file-system "$partial"
    log "debootstrap --variant=minbase $SUITE from $mirror into $ROOT (once; a few minutes)"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase "$SUITE" "$partial" "$mirror" /usr/share/debootstrap/scripts/sid \
        >"$ROOT.debootstrap.log" 2>&1 \
        || { tail -n 30 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
    echo "deb $mirror $SUITE main" >"$partial/etc/apt/sources.list"
    # no daemons started by package scripts; no documentation
    printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
    chmod +x "$partial/usr/sbin/policy-rc.d"
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
        >"$partial/etc/dpkg/dpkg.cfg.d/01-execscope-nodoc"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$partial/etc/apt/apt.conf.d/01-execscope"
    echo "$SUITE $mirror" >"$partial/.execscope-root"
    mv "$partial" "$ROOT"
}

carry_file() {  # carry_file HOST-FILE [PATH-IN-ROOT]: copy it in (following links)
    local from="$1" to="${2:-$1}"
    [ -f "$from" ] || return 0
    mkdir -p "$ROOT$(dirname "$to")"
    rm -f "$ROOT$to"
    cp -L "$from" "$ROOT$to"
}

carry_host_config() {
    carry_file /etc/resolv.conf
    carry_file /etc/hosts
    # apt's fetch settings of the host (a mirror that serves an expired Release, a proxy)
    apt-config dump 2>/dev/null \
        | grep -E '^Acquire::(Check-Valid-Until|Check-Date|Retries|https?::Proxy|https?::Timeout) ' \
        >"$ROOT/etc/apt/apt.conf.d/02-execscope-host" || true
    # CA certificates: the host's local ones (kept by a later update-ca-certificates in the root),
    # then its whole bundle, at its usual path and wherever the environment points
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cp -rL /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
    fi
    carry_host_bundle
    local var
    for var in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE PIP_CERT PIP_CLIENT_CERT; do
        [ -f "${!var:-}" ] && carry_file "${!var}"
    done
    # pip: its config files, and the local files and directories its settings name (cert, find-links, ...)
    carry_file /etc/pip.conf
    carry_file /etc/xdg/pip/pip.conf
    carry_file "$HOME/.config/pip/pip.conf" /root/.config/pip/pip.conf
    carry_file "$HOME/.pip/pip.conf" /root/.pip/pip.conf
    [ -n "${PIP_CONFIG_FILE:-}" ] && carry_file "$PIP_CONFIG_FILE"
    local values path
    values="$( { python3 -m pip config list 2>/dev/null | sed -e "s/^[^=]*=//" -e "s/^'//" -e "s/'$//"; \
                 env | sed -n 's/^PIP_[A-Z_]*=//p'; } || true)"
    for path in $values; do
        path="${path#file://}"
        case "$path" in /*) ;; *) continue ;; esac
        if [ -f "$path" ]; then
            carry_file "$path"
        elif [ -d "$path" ] && [ "$path" != / ] && ! mountpoint -q "$ROOT$path"; then
            mount_in "$path" --bind "$path"
            mount -o remount,bind,ro "$ROOT$path" 2>/dev/null || true
        fi
    done
}

root_env() {  # the variables passed into the root: pip's, proxies, CA paths, CI
    local var
    ROOT_ENV=("TERM=${TERM:-xterm}")
    while IFS= read -r var; do
        ROOT_ENV+=("$var=${!var}")
    done < <(compgen -e | grep -E '^(PIP_[A-Z_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|CI)$' || true)
}

mount_root() {
    unmount_stale
    mount_in /proc -t proc proc
    mount_in /dev --bind /dev
    mount_in /dev/pts --bind /dev/pts
    [ -d /dev/shm ] && mount_in /dev/shm --bind /dev/shm
    # /sys and what is mounted under it (the cgroup files chDB sizes itself by), read-only, one by one
    local target
    for target in $(awk '$2 == "/sys" || index($2, "/sys/") == 1 { print $2 }' /proc/mounts); do
        mount_in "$target" --bind "$target"
        mount -o remount,bind,ro "$ROOT$target" 2>/dev/null || true
    done
    mount_in "$SRC" --bind "$REPO"
    carry_host_config
}

packages_for() {  # the packages the given versions need
    local v out="$BASE_PACKAGES"
    for v in "$@"; do
        out="$out python$v python$v-dev python$v-venv"
    done
    echo "$out"
}

install_packages() {
    local missing=() p
    for p in $(packages_for "$@"); do
        in_root dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ] && [ "${EXECSCOPE_PYTHONS_UPGRADE:-0}" != 1 ]; then
        return 0
    fi
    log "apt-get install ${missing[*]:-(upgrade)} in the root"
    in_root apt-get update -q >"$ROOT.apt.log" 2>&1 || { tail -n 20 "$ROOT.apt.log" >&2; die "apt-get update failed in the root"; }
    if [ "${EXECSCOPE_PYTHONS_UPGRADE:-0}" = 1 ]; then
        in_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q dist-upgrade >>"$ROOT.apt.log" 2>&1 \
            || { tail -n 20 "$ROOT.apt.log" >&2; die "apt-get dist-upgrade failed in the root"; }
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        in_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a >>"$ROOT.apt.log" 2>&1 || true  # an interrupted run
        in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$ROOT.apt.log" 2>&1 \
            || { tail -n 20 "$ROOT.apt.log" >&2; die "apt-get install ${missing[*]} failed in the root (is python$* in Debian $SUITE?)"; }
    fi
    in_root apt-get clean
}

install_stamp() {  # what an editable install depends on: the build config and the C sources
    (
        cd "$REPO"
        {
            git ls-files -co --exclude-standard -- pyproject.toml setup.py setup.cfg '*.c' '*.h' 2>/dev/null \
                || find . -path ./.venv -prune -o \( -name pyproject.toml -o -name '*.c' -o -name '*.h' \) -print
        } | sort | xargs -r sha256sum | sha256sum | cut -c1-16
    )
}

write_venv_helper() {  # the script that makes VERSION's venv current, then runs a command in it
    mkdir -p "$ROOT$VENVS"
    cat >"$ROOT$VENVS/in-venv.sh" <<'EOF'
#!/bin/bash
# in-venv.sh VERSION STAMP COMMAND...: (re)install the checkout into VERSION's venv when STAMP (or the
# interpreter) changed or a compiled extension is gone, then run COMMAND in the venv at the checkout.
set -euo pipefail
v="$1" stamp="$2"
shift 2
venv="/opt/execscope/venv-$v"
cd /src/execscope
want="$stamp $(python"$v" -VV 2>&1 | head -n 1)"
fresh=1
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.execscope-stamp" 2>/dev/null)" = "$want" ]; then
    fresh=0
    while IFS= read -r so; do [ -e "$so" ] || fresh=1; done <"$venv/.execscope-built"
fi
if [ "$fresh" = 1 ]; then
    echo "pythons.sh: pip install -e '.[dev]' into the $v venv" >&2
    rm -f "$venv/.execscope-stamp"
    [ -x "$venv/bin/python" ] || python"$v" -m venv "$venv"
    tag="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
    "$venv/bin/python" -m pip install -q -e '.[dev]'
    find . -path ./.venv -prune -o -name "*$tag" -print >"$venv/.execscope-built"
    echo "$want" >"$venv/.execscope-stamp"
fi
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
exec "$@"
EOF
    chmod +x "$ROOT$VENVS/in-venv.sh"
}

# -------------------------------------------------------------------------------------- the broker

KAFKA_DIR=""
CONTROL_PID=""

start_broker() {
    if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
        log "no java/mvn on the host: the Kafka tests will skip"
        return 0
    fi
    KAFKA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/execscope-pythons-kafka.XXXXXX")"
    local out
    out="$(bash "$HERE/kafka.sh" start "$KAFKA_DIR")" || die "tests/infra/kafka.sh start $KAFKA_DIR failed"
    local bootstrap
    bootstrap="$(sed -n 's/^bootstrap=//p' <<<"$out")"
    [ -n "$bootstrap" ] || die "kafka.sh printed no bootstrap= line: $out"
    log "Kafka broker on the host at $bootstrap ($KAFKA_DIR)"
    local sasl_ssl ssl tls_dir
    sasl_ssl="$(sed -n 's/^sasl_ssl=//p' <<<"$out")"
    ssl="$(sed -n 's/^ssl=//p' <<<"$out")"
    tls_dir="$(sed -n 's/^tls_dir=//p' <<<"$out")"
    [ -n "$sasl_ssl" ] && [ -n "$ssl" ] && [ -d "$tls_dir" ] || die "kafka.sh printed no secured listeners: $out"
    rm -rf "$ROOT$TLS_IN_ROOT"
    mkdir -p "$ROOT$TLS_IN_ROOT"
    cp "$tls_dir/ca.pem" "$tls_dir/user" "$tls_dir/password" "$ROOT$TLS_IN_ROOT/"
    rm -rf "$ROOT$CONTROL"
    mkdir -p "$ROOT$CONTROL"
    control_loop &
    CONTROL_PID=$!
    ROOT_ENV+=("EXECSCOPE_TEST_KAFKA=$bootstrap" "EXECSCOPE_TEST_KAFKA_CONTROL=$CONTROL"
               "EXECSCOPE_TEST_KAFKA_SASL_SSL=$sasl_ssl" "EXECSCOPE_TEST_KAFKA_SSL=$ssl"
               "EXECSCOPE_TEST_KAFKA_TLS_DIR=$TLS_IN_ROOT")
}

OTELCOL_IN_ROOT=/opt/execscope/otelcol  # the host's build of the stock collector, inside the root

carry_otelcol() {  # the stock collector for the stock-collector tests: built on the host (no go in the root)
    if ! command -v go >/dev/null; then
        log "no go on the host: the stock OpenTelemetry Collector tests will skip"
        return 0
    fi
    local binary
    rm -f "$ROOT$OTELCOL_IN_ROOT"
    if binary="$(bash "$HERE/otelcol.sh" build | tail -n 1)" && [ -x "$binary" ]; then
        mkdir -p "$ROOT$(dirname "$OTELCOL_IN_ROOT")"
        cp "$binary" "$ROOT$OTELCOL_IN_ROOT.tmp"
        mv -f "$ROOT$OTELCOL_IN_ROOT.tmp" "$ROOT$OTELCOL_IN_ROOT"
    else
        log "tests/infra/otelcol.sh build failed: the stock OpenTelemetry Collector tests will fail"
    fi
    ROOT_ENV+=("EXECSCOPE_TEST_OTELCOL=$OTELCOL_IN_ROOT")  # missing after a failed build: the tests fail
}

control_loop() {  # serves NAME.req (stop|start|status) with NAME.out, NAME.err and, last, NAME.rc
    local dir="$ROOT$CONTROL" req name action rc t0
    while [ -d "$dir" ]; do
        for req in "$dir"/*.req; do
            [ -f "$req" ] || continue
            name="${req%.req}"
            action="$(cat "$req")"
            rm -f "$req"
            t0=$SECONDS
            case "$action" in
                stop | start | status)
                    rc=0
                    bash "$HERE/kafka.sh" "$action" "$KAFKA_DIR" >"$name.out" 2>"$name.err" </dev/null || rc=$?
                    ;;
                *) echo "unknown request $action" >"$name.err"; : >"$name.out"; rc=2 ;;
            esac
            [ "$action" = status ] || log "broker $action for a test: exit $rc in $((SECONDS - t0)) s"
            echo "$rc" >"$name.rc.tmp"
            mv "$name.rc.tmp" "$name.rc"
        done
        sleep 0.2
    done
}

stop_broker() {
    if [ -n "$CONTROL_PID" ]; then
        kill "$CONTROL_PID" 2>/dev/null || true
        wait "$CONTROL_PID" 2>/dev/null || true
        CONTROL_PID=""
    fi
    if [ -n "$KAFKA_DIR" ]; then
        bash "$HERE/kafka.sh" stop "$KAFKA_DIR" || log "stopping the broker in $KAFKA_DIR failed"
        cp "$KAFKA_DIR/broker.log" "$ROOT.logs/broker.log" 2>/dev/null || true
        rm -rf "$KAFKA_DIR"
        KAFKA_DIR=""
    fi
    rm -rf "${ROOT:?}$CONTROL" "${ROOT:?}$TLS_IN_ROOT"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_broker
    unmount_all
    exit "$rc"
}

# ------------------------------------------------------------------------------------------- main

prepare() {  # prepare VERSION...: the root, its packages and mounts, the lock
    need_root_tools
    mkdir -p "$(dirname "$ROOT")"
    exec 8>"$ROOT.lock"
    flock -n 8 || { log "waiting for another pythons.sh using $ROOT"; flock 8; }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    bootstrap
    root_env
    mount_root
    install_packages "$@"
    carry_host_bundle  # apt's ca-certificates may have rewritten it
    write_venv_helper
}

carry_host_bundle() {  # the host's CA bundle (where the environment points, else the usual path)
    local bundle=/etc/ssl/certs/ca-certificates.crt var
    for var in SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE PIP_CERT; do
        [ -f "${!var:-}" ] && { bundle="${!var}"; break; }
    done
    carry_file "$bundle" /etc/ssl/certs/ca-certificates.crt
}

run_tests() {
    local versions=() pytest_args=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --) shift; pytest_args=("$@"); break ;;
            3.*) versions+=("$1"); shift ;;
            *) usage ;;
        esac
    done
    [ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"$DEFAULT_VERSIONS"
    [ ${#pytest_args[@]} -gt 0 ] || pytest_args=(-q -n 2 tests)
    local started=$SECONDS
    prepare "${versions[@]}"
    start_broker
    carry_otelcol
    local stamp logdir v rc failed=0 summaries=()
    stamp="$(install_stamp)"
    logdir="$ROOT.logs"  # the last run's (one run at a time: the lock)
    mkdir -p "$logdir"
    for v in "${versions[@]}"; do
        log "Python $v: python -m pytest ${pytest_args[*]}"
        local t0=$SECONDS
        rc=0
        in_root "$VENVS/in-venv.sh" "$v" "$stamp" python -m pytest "${pytest_args[@]}" 2>&1 \
            | tee "$logdir/pytest-$v.log" || rc=${PIPESTATUS[0]}
        local last
        last="$(grep -E '[0-9]+ (passed|failed|error|errors|skipped)|no tests ran' "$logdir/pytest-$v.log" | tail -n 1 \
            | sed -e 's/^=* *//' -e 's/ *=*$//' || true)"
        if [ "$rc" = 0 ]; then
            summaries+=("Python $v: ok   (${last:-no summary line}; $((SECONDS - t0)) s)")
        else
            failed=1
            summaries+=("Python $v: FAIL exit $rc (${last:-no summary line}; $((SECONDS - t0)) s; log $logdir/pytest-$v.log)")
        fi
    done
    echo
    echo "pythons.sh: summary ($((SECONDS - started)) s in all, root $ROOT)"
    printf '  %s\n' "${summaries[@]}"
    return "$failed"
}

run_exec() {
    local v="${1:-}"
    [[ "$v" == 3.* ]] || usage
    shift
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || usage
    prepare "$v"
    start_broker
    carry_otelcol
    in_root "$VENVS/in-venv.sh" "$v" "$(install_stamp)" "$@"
}

case "${1:-}" in
    -h | --help) usage ;;
    build) shift; prepare $DEFAULT_VERSIONS ;;
    clean)
        [ -z "$(mounts_under_root)" ] || die "something is still mounted in $ROOT: $(mounts_under_root | tr '\n' ' ')"
        rm -rf --one-file-system "$ROOT" "$ROOT.partial" "$ROOT".*.log
        ;;
    exec) shift; run_exec "$@" ;;
    *) run_tests "$@" ;;
esac
