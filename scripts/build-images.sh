#!/usr/bin/env bash
# Build the musicrec container images with podman (preferred) or docker, whichever exists.
#
#   scripts/build-images.sh                 # `make images`: api + ui on a locally made Debian base
#   BASE_IMAGE=python:3.11-slim scripts/build-images.sh   # public base image (needs a registry)
#
# With no BASE_IMAGE the base is bootstrapped here with mmdebstrap from this machine's own apt
# sources and imported as localhost/musicrec-base:<suite>, so no container registry is needed;
# then the Prometheus and Alertmanager images (Debian packages, deploy/monitoring.Dockerfile)
# are built as well, because their public images cannot be pulled either.
#
# pip inside the build uses this machine's package index: index-url, extra-index-url,
# trusted-host and cert are read from the host's pip configuration (`pip config list`, PIP_*
# variables) and passed as build arguments; file:// indexes are skipped (not visible inside a
# build). With podman, pip's CA bundle is mounted read-only into the build (a TLS-inspecting
# proxy needs it); docker builds use the base image's CA bundle.
#
# Environment: ENGINE (podman|docker), TAG (default latest), BASE_IMAGE, IMAGES (subset of
# "api ui prometheus alertmanager"), PYTHON (reads the pip configuration, default python3),
# CONTAINERS_CONF (podman; default deploy/podman/containers.conf).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG="${TAG:-latest}"
PYTHON="${PYTHON:-python3}"

if [[ -z "${ENGINE:-}" ]]; then
    if command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    else
        echo "build-images: neither podman nor a running docker found;" \
            "run scripts/install-os-deps.sh" >&2
        exit 1
    fi
fi

build_flags=()
if [[ "$ENGINE" == podman ]]; then
    # runc, netavark and explicit ulimits: what works on cgroups-hybrid hosts without
    # permission to raise rlimits (see the file). A caller's own CONTAINERS_CONF wins.
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}"
    # Docker image format keeps HEALTHCHECK (the OCI format has no field for it). Build steps
    # use the host's network: on such hosts only it reaches the package mirrors (containers
    # on a bridge network have no way out; the running stack does not need one).
    build_flags+=(--format docker --network host)
fi

local_base=0
if [[ -z "${BASE_IMAGE:-}" ]]; then
    local_base=1
    IMAGES="${IMAGES:-api ui prometheus alertmanager}"
else
    IMAGES="${IMAGES:-api ui}"
fi

# --- pip configuration of this host, as build arguments ------------------------------------
pip_setting() {  # pip_setting KEY: the effective value of a pip option (env beats files)
    local env_name
    env_name="PIP_$(tr 'a-z-' 'A-Z_' <<<"$1")"
    if [[ -n "${!env_name:-}" ]]; then
        printf '%s\n' "${!env_name}"
        return
    fi
    "$PYTHON" -m pip config list 2>/dev/null \
        | sed -n -E "s/^[^.]*\\.$1='(.*)'\$/\\1/p" | tail -n 1
}
http_only() {  # keep the http(s) URLs of a space-separated list
    local url out=()
    for url in $1; do
        case "$url" in
        http://* | https://*) out+=("$url") ;;
        *) echo "build-images: skipping pip index $url (not reachable from a build)" >&2 ;;
        esac
    done
    printf '%s' "${out[*]:-}"
}
index_url="$(http_only "$(pip_setting index-url)")"
extra_index_url="$(http_only "$(pip_setting extra-index-url)")"
trusted_host="$(pip_setting trusted-host)"
pip_cert="$(pip_setting cert)"
[[ -n "$index_url" ]] && build_flags+=(--build-arg "PIP_INDEX_URL=$index_url")
[[ -n "$extra_index_url" ]] && build_flags+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra_index_url")
[[ -n "$trusted_host" ]] && build_flags+=(--build-arg "PIP_TRUSTED_HOST=$trusted_host")
if [[ -n "$pip_cert" && -r "$pip_cert" && "$ENGINE" == podman ]]; then
    build_flags+=(--volume "$(readlink -f "$pip_cert"):/run/host-pip-ca.pem:ro"
        --build-arg PIP_CERT=/run/host-pip-ca.pem)
fi

# --- base image ------------------------------------------------------------------------------
if [[ "$local_base" -eq 1 ]]; then
    suite="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"')"
    if [[ -z "$suite" ]] || ! command -v mmdebstrap >/dev/null 2>&1; then
        echo "build-images: a local base needs a Debian host with mmdebstrap" \
            "(scripts/install-os-deps.sh), or set BASE_IMAGE" >&2
        exit 1
    fi
    BASE_IMAGE="${LOCAL_BASE_IMAGE:-localhost/musicrec-base:$suite}"
    if ! "$ENGINE" image exists "$BASE_IMAGE" 2>/dev/null \
        && ! "$ENGINE" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        # This host's apt sources (deb822 .sources or one-line .list files).
        sources=()
        for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources; do
            [[ -s "$file" ]] && sources+=("$file")
        done
        workdir="$(mktemp -d)"
        trap 'rm -rf "$workdir"' EXIT
        echo "build-images: bootstrapping $BASE_IMAGE (Debian $suite, mmdebstrap)"
        mmdebstrap --variant=minbase --quiet \
            --include=python3,python3-venv,libgomp1,ca-certificates,passwd,wget \
            "$suite" "$workdir/rootfs.tar" "${sources[@]}"
        "$ENGINE" import --change 'CMD ["/bin/bash"]' "$workdir/rootfs.tar" "$BASE_IMAGE" >/dev/null
        rm -rf "$workdir"
        trap - EXIT
    fi
    build_flags+=(--build-arg "BUILD_PACKAGES=build-essential python3-dev")
fi
build_flags+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

# --- images ----------------------------------------------------------------------------------
for image in $IMAGES; do
    case "$image" in
    api | ui) dockerfile=Dockerfile ;;
    prometheus | alertmanager) dockerfile=deploy/monitoring.Dockerfile ;;
    *)
        echo "build-images: unknown image $image" >&2
        exit 1
        ;;
    esac
    echo "build-images: $ENGINE build --target $image -t musicrec-$image:$TAG (base $BASE_IMAGE)"
    started=$SECONDS
    "$ENGINE" build "${build_flags[@]}" --file "$dockerfile" --target "$image" \
        --tag "musicrec-$image:$TAG" .
    echo "build-images: musicrec-$image:$TAG built in $((SECONDS - started)) s"
done
