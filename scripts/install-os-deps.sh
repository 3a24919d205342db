#!/usr/bin/env bash
# Install the operating-system tools the test suite and local monitoring need (Debian/Ubuntu):
#   - prometheus + promtool  (config validation, local metrics scraping)
#   - chromium + chromedriver (browser tests of the Streamlit UI)
#   - a Java runtime          (PySpark), only when `java` is not already on PATH
#   - a colour emoji font     (mood cards in UI screenshots)
#   - the container stack test (tests/system/test_stack.py, `make images`): podman with runc, netavark
#     and aardvark-dns (compose networks with service-name DNS), mmdebstrap (a local Debian base
#     image, no registry needed), and prometheus-alertmanager (amtool checks the config)
#   - wrk                     (HTTP load generator of benchmarks/bench_wrk.py)
#
# Idempotent: packages whose command is already available are skipped.
# Safe in containers without systemd: service start-up during package installation is
# blocked with a temporary policy-rc.d, so no Prometheus daemon is left running.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

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

missing=()
have_all prometheus promtool || missing+=(prometheus)
# A Chrome-family browser that is already installed (e.g. on hosted CI runners) will do.
have_any chromium chromium-browser google-chrome google-chrome-stable || missing+=(chromium)
have_all chromedriver || missing+=(chromium-driver)
have_all java || missing+=(default-jre-headless)
have_all wrk || missing+=(wrk)
# Colour emoji for the UI's mood cards in browser screenshots (a font, so no command to test).
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
# Containers: podman runs with runc (deploy/podman/containers.conf); netavark and aardvark-dns
# are podman helpers, not on PATH.
have_all podman || missing+=(podman)
have_all runc || missing+=(runc)
[ -x /usr/lib/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
have_all mmdebstrap || missing+=(mmdebstrap)
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

for tool in prometheus promtool chromium chromedriver java wrk podman runc mmdebstrap amtool; do
    if command -v "$tool" >/dev/null 2>&1; then
        echo "install-os-deps: $tool -> $(command -v "$tool")"
    else
        echo "install-os-deps: WARNING $tool still missing" >&2
    fi
done
