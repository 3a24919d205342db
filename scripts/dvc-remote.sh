#!/usr/bin/env bash
# Configure the default DVC remote that `dvc push` / `dvc pull` use.
# The remote goes into .dvc/config.local, which git ignores: nothing machine-specific is committed.
#
#   scripts/dvc-remote.sh [local [DIR]]
#       A directory remote outside the repository (default), DIR or
#       ${DVC_LOCAL_REMOTE:-$HOME/.cache/musicrec-dvc-remote}.
#   scripts/dvc-remote.sh s3 s3://BUCKET/PATH
#       S3 or an S3-compatible store (MinIO, Ceph, ...). Credentials are read from the
#       environment at push/pull time (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or an AWS
#       profile) and never written to a file; AWS_ENDPOINT_URL, when set, is recorded as the
#       remote's endpointurl (needed for anything but AWS itself).
#
# Run it inside the repository; DVC=/path/to/dvc picks the dvc executable (default: dvc on PATH).
set -euo pipefail

DVC="${DVC:-dvc}"
kind="${1:-local}"

case "$kind" in
  local)
    dir="${2:-${DVC_LOCAL_REMOTE:-$HOME/.cache/musicrec-dvc-remote}}"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    "$DVC" remote add --local --force --default localremote "$dir"
    echo "dvc-remote: default remote 'localremote' -> $dir"
    ;;
  s3)
    url="${2:-}"
    if [[ "$url" != s3://* ]]; then
      echo "usage: $0 s3 s3://BUCKET/PATH" >&2
      exit 2
    fi
    "$DVC" remote add --local --force --default s3remote "$url"
    if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
      "$DVC" remote modify --local s3remote endpointurl "$AWS_ENDPOINT_URL"
    fi
    echo "dvc-remote: default remote 's3remote' -> $url${AWS_ENDPOINT_URL:+ (endpoint $AWS_ENDPOINT_URL)}"
    if [[ -z "${AWS_ACCESS_KEY_ID:-}${AWS_PROFILE:-}" ]]; then
      echo "dvc-remote: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) before dvc push" >&2
    fi
    ;;
  -h|--help)
    sed -n '2,14p' "$0"
    ;;
  *)
    echo "usage: $0 [local [DIR] | s3 s3://BUCKET/PATH]" >&2
    exit 2
    ;;
esac
