#!/usr/bin/env bash
# Builds the Packer tools the plugin's tests use, once, into TOOLS_DIR/bin:
#   packer      v1.11.2, from the Go module proxy, through a throwaway module
#               that requires it with the go-cty replace Packer's own go.mod has
#               (replace directives of a dependency do not apply, so
#               `go install github.com/hashicorp/packer@v1.11.2` cannot build it);
#   packer-sdc  from the packer-plugin-sdk version that packer-plugin-imgforge/go.mod
#               requires (its `tool` line pins it).
# Each is named with its version, and `packer`, `packer-sdc` link to them.
# Usage: hack/packer-tools.sh TOOLS_DIR [packer|packer-sdc]...
set -euo pipefail

tools=${1:?usage: hack/packer-tools.sh TOOLS_DIR [packer|packer-sdc]...}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
PACKER_VERSION=1.11.2
GOCTY_REPLACE="github.com/nywilken/go-cty v1.13.3" # what `packer-sdc fix` adds
export CHECKPOINT_DISABLE=1 # packer: no update check over the network
mkdir -p "$tools/bin"

build_packer() {
  local bin="$tools/bin/packer-$PACKER_VERSION"
  if ! { [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -qx "Packer v$PACKER_VERSION"; }; then
    build_packer_from_proxy "$bin"
  fi
  ln -sfn "packer-$PACKER_VERSION" "$tools/bin/packer"
}

build_packer_from_proxy() {
  local bin=$1
  local src="$tools/src/packer-$PACKER_VERSION"
  rm -rf "$src" && mkdir -p "$src"
  cat >"$src/go.mod" <<MOD
module imgforge.invalid/tools/packer

go 1.21.0

require github.com/hashicorp/packer v$PACKER_VERSION

replace github.com/zclconf/go-cty => $GOCTY_REPLACE
MOD
  echo "packer-tools: building packer v$PACKER_VERSION (a few minutes, once)" >&2
  (cd "$src" && go mod download github.com/hashicorp/packer &&
    go get "github.com/hashicorp/packer@v$PACKER_VERSION" &&
    CGO_ENABLED=0 nice -n 10 go build -trimpath -o "$bin.tmp" github.com/hashicorp/packer)
  mv "$bin.tmp" "$bin"
}

build_sdc() {
  local v
  v=$(cd "$repo/packer-plugin-imgforge" && go list -m -f '{{.Version}}' github.com/hashicorp/packer-plugin-sdk)
  local bin="$tools/bin/packer-sdc-$v"
  if [[ ! -x $bin ]]; then
    echo "packer-tools: building packer-sdc $v" >&2
    (cd "$repo/packer-plugin-imgforge" && nice -n 10 go build -trimpath -o "$bin.tmp" github.com/hashicorp/packer-plugin-sdk/cmd/packer-sdc)
    mv "$bin.tmp" "$bin"
  fi
  ln -sfn "packer-sdc-$v" "$tools/bin/packer-sdc" # for the go:generate lines
}

(($#)) || set -- packer packer-sdc
for t in "$@"; do
  case $t in
    packer) build_packer ;;
    packer-sdc) build_sdc ;;
    *) echo "packer-tools: unknown tool $t" >&2; exit 2 ;;
  esac
done
