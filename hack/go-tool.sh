#!/usr/bin/env bash
# Builds a Go tool the tests run (syft, cosign), once, from the Go module
# proxy into TOOLS_DIR/bin as NAME-VERSION, and links NAME to it.
# Usage: hack/go-tool.sh TOOLS_DIR NAME VERSION PACKAGE [VERSION_LDFLAG]
#   VERSION_LDFLAG: the -X variable that holds the version, such as
#   main.version; `NAME version` must then print VERSION.
set -euo pipefail

tools=${1:?usage: hack/go-tool.sh TOOLS_DIR NAME VERSION PACKAGE [VERSION_LDFLAG]}
name=${2:?name} version=${3:?version} pkg=${4:?package} xvar=${5:-}
mkdir -p "$tools/bin"
bin="$tools/bin/$name-$version"
if ! { [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "$version"; }; then
  echo "$name: building $name v$version (a few minutes, once)" >&2
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  ldflags=
  [[ -n $xvar ]] && ldflags="-X $xvar"
  CGO_ENABLED=0 GOBIN="$gobin" nice -n "${TOOL_NICE:-10}" go install -trimpath \
    -ldflags "$ldflags" "$pkg@v$version"
  mv "$gobin/$name" "$bin"
fi
ln -sfn "$name-$version" "$tools/bin/$name"
