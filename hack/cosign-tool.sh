#!/usr/bin/env bash
# Builds cosign, which the signing tests verify imgforge's signatures and
# attestations with, once, from the Go module proxy into TOOLS_DIR/bin as
# cosign-VERSION, and links `cosign` to it.
# Usage: hack/cosign-tool.sh TOOLS_DIR
set -euo pipefail

tools=${1:?usage: hack/cosign-tool.sh TOOLS_DIR}
COSIGN_VERSION=2.6.5
mkdir -p "$tools/bin"
bin="$tools/bin/cosign-$COSIGN_VERSION"
if ! { [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "$COSIGN_VERSION"; }; then
  echo "cosign-tool: building cosign v$COSIGN_VERSION (a few minutes, once)" >&2
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  CGO_ENABLED=0 GOBIN="$gobin" nice -n "${TOOL_NICE:-10}" go install -trimpath \
    -ldflags "-X sigs.k8s.io/release-utils/version.gitVersion=v$COSIGN_VERSION" "github.com/sigstore/cosign/v2/cmd/cosign@v$COSIGN_VERSION"
  mv "$gobin/cosign" "$bin"
fi
ln -sfn "cosign-$COSIGN_VERSION" "$tools/bin/cosign"
