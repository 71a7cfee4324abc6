#!/bin/sh
# One Secret per component from an `edgesplit pki init` directory:
#   deploy/k8s/pki-secrets.sh PKI_DIR [NAMESPACE]
set -eu
dir=$1; ns=${2:-edgesplit}
for d in "$dir"/services/* "$dir"/nodes/*; do
  [ -d "$d" ] || continue
  name=edgesplit-pki-$(basename "$d")
  kubectl -n "$ns" create secret generic "$name" --from-file="$d" \
    --dry-run=client -o yaml | kubectl apply -f -
done
