#!/usr/bin/env bash
# Checks the Packer plugin's generated files and binary:
#   - regenerates the HCL2 spec, the docs partials and the rendered docs
#     (make packer-generate) and fails if that changed anything (drift);
#   - builds packer-plugin-imgforge and runs `packer-sdc plugin-check` on it.
# Usage: hack/packer-check.sh TOOLS_DIR
set -euo pipefail

tools=${1:?usage: hack/packer-check.sh TOOLS_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
plugin="$repo/packer-plugin-imgforge"

generated() {
  (cd "$plugin" && find builder -name '*.hcl2spec.go' && find docs-partials .web-docs -type f) | LC_ALL=C sort
}
fingerprint() {
  (cd "$plugin" && generated | xargs -d '\n' sha256sum; generated)
}
before=$(fingerprint)
make -s -C "$repo" packer-generate TOOLS_DIR="$tools"
after=$(fingerprint)
if [[ $before != "$after" ]]; then
  echo "packer-check: the generated files were stale and are now regenerated; review and commit them:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$plugin" && go build -o "$tmp/packer-plugin-imgforge" .)
(cd "$tmp" && "$tools/bin/packer-sdc" plugin-check packer-plugin-imgforge)
echo "packer-check: generated files up to date; plugin-check passed ($(du -h "$tmp/packer-plugin-imgforge" | cut -f1) binary)"
