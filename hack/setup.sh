#!/usr/bin/env bash
# Installs what imgforge needs to build images and to run its tests, from
# Debian's packages. Run as root on Debian 12 (bookworm) or later.
set -euo pipefail

packages=(
  mmdebstrap      # Debian root filesystems
  uidmap          # newuidmap/newgidmap: mmdebstrap --mode=unshare when not root (and the e2e TestRootlessBuild)
  passwd          # useradd/usermod: TestRootlessBuild makes its unprivileged user with subordinate ids
  arch-test       # mmdebstrap's architecture check
  ca-certificates
  squashfs-tools-ng # tar2sqfs: the squashfs root, straight from a tar
  cryptsetup-bin  # veritysetup: the dm-verity hash tree of the root
  qemu-utils      # qemu-img: qcow2 from the raw disk
  xorriso         # the hybrid ISO
  dosfstools      # fsck.vfat, for imgforge verify and the tests
  qemu-system-x86 # imgforge run, and the tests' boots
  ovmf            # UEFI firmware for QEMU (and its Secure Boot build with the snakeoil keys, for TestSecureBoot)
  sbsigntool      # sbsign: the Secure Boot signatures of systemd-boot and the unified kernel images (--secure-boot-key)
  faketime        # libfaketime: sbsign's signing time frozen at SOURCE_DATE_EPOCH, so signed disks are reproducible
  openssl         # tests: decrypts Debian's snakeoil Secure Boot test key
  isolinux        # tests: ISOLINUX for the ISO writer's BIOS tests (images carry their own)
  syslinux-common
  ipxe            # iPXE loaders that imgforge serve hands out over TFTP
  skopeo          # tests: reads our OCI layouts and docker archives
  umoci           # tests: unpacks our OCI layouts
  make
  procps          # pgrep, in the tests
  iproute2        # ip: the cluster test's bridge in a network namespace
  varnish         # tests: varnishd -C checks the VCL of the data-only cache role (test/dataroles)
  e2fsprogs       # mke2fs: the empty state file system every disk ships
  cpio            # tests: unpacks the overlay image's initrd (pkg/boot TestCpio)
  keepalived      # tests: TestVIPMoves runs the lb role's VRRP setup in network namespaces
  nftables        # tests: nft loads the lb role's nftables.conf there
  prometheus      # tests: a real Prometheus reads back what the agent's metrics shipper pushes (pkg/agent/metrics)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "setup: Go is not on PATH (expected /usr/local/go/bin)" >&2; exit 1; }
echo "setup: ready ($(mmdebstrap --version), $(go version | cut -d' ' -f3))"
