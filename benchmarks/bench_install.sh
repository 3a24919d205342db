#!/usr/bin/env bash
# Cold install of the hashed lock, as `make install` does it on a fresh clone: a new virtual
# environment and empty uv / pip caches (temporary, so the machine's own caches are untouched).
#
#   bash benchmarks/bench_install.sh [uv|pip ...]      (default: uv pip)
#
# Prints one line per installer: wall seconds, packages installed, the load average at the start
# (downloads dominate, so the network matters as much as the cores).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
installers=("$@")
[ "${#installers[@]}" -gt 0 ] || installers=(uv pip)

for installer in "${installers[@]}"; do
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$python" -m venv "$work/venv"
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s%N)
    UV_CACHE_DIR="$work/uv-cache" PIP_CACHE_DIR="$work/pip-cache" MUSICREC_INSTALLER="$installer" \
        bash scripts/install-python-deps.sh "$work/venv" requirements.lock >"$work/log" 2>&1 \
        || { cat "$work/log" >&2; exit 1; }
    end=$(date +%s%N)
    packages=$("$work/venv/bin/python" -m pip list --format freeze 2>/dev/null | wc -l)
    ms=$(((end - start) / 1000000))
    printf '%-4s cold install: %d.%01d s, %d packages, load average at start %s\n' \
        "$installer" $((ms / 1000)) $((ms % 1000 / 100)) "$packages" "$load"
    rm -rf "$work"
    trap - EXIT
done
