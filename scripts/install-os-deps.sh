#!/usr/bin/env bash
# Install the operating-system tools the test suite and local monitoring need (Debian/Ubuntu):
#   - prometheus + promtool  (config validation, local metrics scraping)
#   - chromium + chromedriver (browser tests of the Streamlit UI)
#   - a Java runtime          (PySpark), only when `java` is not already on PATH
#   - a colour emoji font     (mood cards in UI screenshots)
#   - the container stack test (tests/system/test_stack.py, `make images`): podman with runc,
#     conmon, netavark, aardvark-dns (compose networks with service-name DNS) and iptables (which
#     netavark calls to set a network up), mmdebstrap (a local Debian base image, no registry
#     needed), and prometheus-alertmanager (amtool checks the config)
#   - wrk                     (HTTP load generator of benchmarks/bench_wrk.py)
#   - postgresql              (the shared event store: tests/system/test_postgres.py and
#                              benchmarks/bench_events.py start a throwaway server on loopback)
#
# Idempotent: packages whose command is already available are skipped.
# `install-os-deps.sh --check` installs nothing: it names each missing helper of the container
# stack on a line of its own and exits 1 if there is one (the stack test's preflight uses it).
# Safe in containers without systemd: service start-up during package installation is
# blocked with a temporary policy-rc.d, so no Prometheus daemon is left running.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# have_all CMD...: every command is on PATH.  have_any CMD...: at least one is.
have_all() {
    local cmd
    for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || return 1; done
}
have_any() {
    local cmd
    for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 && return 0; done
    return 1
}
# postgres_bin: the directory of PostgreSQL's initdb (Debian keeps it off PATH), or nothing.
postgres_bin() {
    local found
    if found=$(command -v initdb 2>/dev/null); then
        dirname "$found"
        return
    fi
    find /usr/lib/postgresql -path '*/bin/initdb' -printf '%h\n' 2>/dev/null | sort -V | tail -n 1
}

# Container helpers, as "package:test" entries. podman runs with runc (deploy/podman/containers.conf)
# and forks conmon to watch each container; netavark sets a compose network up by calling iptables,
# which the Debian packages only suggest, so --no-install-recommends leaves it out (the network then
# fails with "netavark: No such file or directory"). Helpers live off PATH, hence the file tests.
CONTAINER_HELPERS=(
    "podman:cmd podman"
    "runc:cmd runc"
    "conmon:file /usr/bin/conmon /usr/libexec/podman/conmon"
    "netavark:file /usr/lib/podman/netavark"
    "aardvark-dns:file /usr/lib/podman/aardvark-dns"
    "iptables:file /usr/sbin/iptables /sbin/iptables"
    "mmdebstrap:cmd mmdebstrap"
)
# helper_present "cmd NAME" | "file PATH...": the command is on PATH, or one of the files is there.
helper_present() {
    local kind=$1 path
    shift
    if [ "$kind" = cmd ]; then
        have_all "$@"
        return
    fi
    for path in "$@"; do [ -x "$path" ] && return 0; done
    return 1
}
# missing_helpers: the package of each absent container helper, one per line.
missing_helpers() {
    local entry
    for entry in "${CONTAINER_HELPERS[@]}"; do
        # shellcheck disable=SC2086  # the test's words are meant to split
        helper_present ${entry#*:} || echo "${entry%%:*}"
    done
}
# report_helpers: one line per missing helper on stderr; exit status 1 if any.
report_helpers() {
    local package status=0
    for package in $(missing_helpers); do
        echo "install-os-deps: $package is missing (apt-get install $package)" >&2
        status=1
    done
    return "$status"
}

if [ "${1:-}" = --check ]; then
    report_helpers
    exit
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-os-deps: must run as root (or with sudo available)" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-os-deps: apt-get not found; this script supports Debian-based systems only" >&2
    exit 1
fi

missing=()
have_all prometheus promtool || missing+=(prometheus)
# A Chrome-family browser that is already installed (e.g. on hosted CI runners) will do.
have_any chromium chromium-browser google-chrome google-chrome-stable || missing+=(chromium)
have_all chromedriver || missing+=(chromium-driver)
have_all java || missing+=(default-jre-headless)
have_all wrk || missing+=(wrk)
[ -n "$(postgres_bin)" ] || missing+=(postgresql)
# Colour emoji for the UI's mood cards in browser screenshots (a font, so no command to test).
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
mapfile -t -O "${#missing[@]}" missing < <(missing_helpers)
have_all amtool prometheus-alertmanager || missing+=(prometheus-alertmanager)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-os-deps: all tools already present"
else
    echo "install-os-deps: installing ${missing[*]}"
    # Block service start-up (invoke-rc.d honours policy-rc.d exit code 101 = "action forbidden").
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        created_policy=1
    fi
    cleanup() {
        if [ "$created_policy" -eq 1 ]; then
            $SUDO rm -f "$policy"
        fi
    }
    trap cleanup EXIT

    $SUDO apt-get update
    # Some JRE post-install scripts expect this man directory to exist on slim images.
    $SUDO mkdir -p /usr/share/man/man1
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${missing[@]}"
fi

# Belt and braces: if this run installed Prometheus and a pre-existing policy still let the
# package start its daemon (it runs as the dedicated `prometheus` user), stop that daemon.
if [[ " ${missing[*]} " == *" prometheus"* ]] && command -v pgrep >/dev/null 2>&1; then
    # Both daemons run as the packages' dedicated `prometheus` user.
    for pid in $(pgrep -u prometheus 2>/dev/null || true); do
        $SUDO kill "$pid" 2>/dev/null || true
    done
fi

for tool in prometheus promtool chromium chromedriver java wrk amtool; do
    if command -v "$tool" >/dev/null 2>&1; then
        echo "install-os-deps: $tool -> $(command -v "$tool")"
    else
        echo "install-os-deps: WARNING $tool still missing" >&2
    fi
done
if [ -n "$(postgres_bin)" ]; then
    echo "install-os-deps: postgresql -> $(postgres_bin)"
else
    echo "install-os-deps: WARNING postgresql still missing" >&2
fi
# The container stack cannot start without any one of its helpers: name each missing package.
report_helpers
