#!/usr/bin/env bash
# Install the hashed lock into a virtual environment, then musicrec itself (editable).
#
#   scripts/install-python-deps.sh VENV LOCK
#
# uv installs the lock (about 5x faster than pip from empty caches); uv itself is pinned, with
# its hashes, in the same lock, and is bootstrapped from that pin with pip. When uv cannot be had
# (no wheel for this platform, an index that does not serve it), pip installs the lock instead:
# the same pins and hashes either way. MUSICREC_INSTALLER=pip forces the fallback.
set -euo pipefail

venv=${1:?usage: install-python-deps.sh VENV LOCK}
lock=${2:?usage: install-python-deps.sh VENV LOCK}
python="$venv/bin/python"
installer=${MUSICREC_INSTALLER:-uv}

[ -x "$python" ] || { echo "install-python-deps: $python not found (create the venv first)" >&2; exit 1; }
[ -f "$lock" ] || { echo "install-python-deps: $lock not found" >&2; exit 1; }

# The uv requirement of the lock, hashes included: its line and the continuation lines after it.
uv_pin() {
    awk '/^uv==/ {on=1} on {print; if ($0 !~ /\\$/) exit}' "$lock"
}

bootstrap_uv() {
    [ -x "$venv/bin/uv" ] && return 0
    local pin
    pin=$(uv_pin)
    [ -n "$pin" ] || { echo "install-python-deps: no uv pin in $lock" >&2; return 1; }
    "$python" -m pip install -q --require-hashes -r /dev/stdin <<<"$pin"
}

if [ "$installer" = uv ] && bootstrap_uv; then
    echo "install-python-deps: installing $lock with uv"
    "$venv/bin/uv" pip install --quiet --python "$python" --require-hashes -r "$lock"
    "$venv/bin/uv" pip install --quiet --python "$python" --no-deps -e .
else
    [ "$installer" = uv ] && echo "install-python-deps: uv unavailable, installing with pip" >&2
    "$python" -m pip install -q --require-hashes -r "$lock"
    "$python" -m pip install -q --no-deps -e .
fi
