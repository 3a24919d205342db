#!/usr/bin/env bash
# Create the API key Secrets of deploy/k8s: the hashed keys file the API reads
# (musicrec-api-keys) and the UI's read key (musicrec-ui-key). The admin key is printed once
# on stdout; keep it in your password manager. Run again to replace all keys (rotation):
# pods pick the new file up within about a minute plus MUSICREC_WATCH_INTERVAL_S.
#
#   bash scripts/k8s-api-keys.sh [NAMESPACE]      (default namespace: musicrec)
#
# Needs kubectl with access to the cluster and musicrec (MUSICREC=path/to/musicrec).
set -euo pipefail

namespace="${1:-musicrec}"
musicrec="${MUSICREC:-musicrec}"
command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 1; }
command -v "$musicrec" >/dev/null || { echo "musicrec not found (set MUSICREC)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077
keys="$work/api-keys.json"
admin="$("$musicrec" keys create --name admin --scope admin,read,events --keys-file "$keys")"
ui="$("$musicrec" keys create --name ui --scope read,events --keys-file "$keys")"

kubectl -n "$namespace" create secret generic musicrec-api-keys \
    --from-file=api-keys.json="$keys" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create secret generic musicrec-ui-key \
    --from-literal=api-key="$ui" --dry-run=client -o yaml | kubectl apply -f -
echo "secrets musicrec-api-keys and musicrec-ui-key applied in namespace $namespace" >&2
echo "the admin key (shown once):" >&2
echo "$admin"
