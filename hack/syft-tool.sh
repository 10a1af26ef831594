#!/usr/bin/env bash
# Builds syft, the SBOM scanner the SBOM tests read imgforge's SPDX and
# CycloneDX with, once, from the Go module proxy into TOOLS_DIR/bin as
# syft-VERSION, and links `syft` to it.
# Usage: hack/syft-tool.sh TOOLS_DIR
set -euo pipefail

tools=${1:?usage: hack/syft-tool.sh TOOLS_DIR}
SYFT_VERSION=1.57.1
mkdir -p "$tools/bin"
bin="$tools/bin/syft-$SYFT_VERSION"
if ! { [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "$SYFT_VERSION"; }; then
  echo "syft-tool: building syft v$SYFT_VERSION (a few minutes, once)" >&2
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  CGO_ENABLED=0 GOBIN="$gobin" nice -n 10 go install -trimpath \
    -ldflags "-X main.version=$SYFT_VERSION" "github.com/anchore/syft/cmd/syft@v$SYFT_VERSION"
  mv "$gobin/syft" "$bin"
fi
ln -sfn "syft-$SYFT_VERSION" "$tools/bin/syft"
