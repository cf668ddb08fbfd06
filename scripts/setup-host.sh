#!/usr/bin/env bash
# Sets up this host for the test command and the main job, on a fresh Debian machine too:
#  - Debian packages: build the BPF objects (clang, libbpf), run the QEMU test bed (and, with
#    BPFQUOTA_ARCH=arm64, its arm64 VMs), shellcheck, promtool (prometheus: the metrics and alerting
#    rules tests);
#  - the pinned Python tools of scripts/requirements.txt (ansible-core, ansible-lint, molecule,
#    pytest) in a venv of their own, build/venv (BPFQUOTA_VENV), made anew when the pins change;
#  - then scripts/check-host.py: every tool there the way the tests use it, the Python ones from
#    the venv, or a non-zero exit naming what is missing.
# Packages come from Debian's archive and PyPI only. Quick when everything is already set up.
# Callers then put the venv's tools first: . scripts/venv.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
packages=(clang llvm libbpf-dev libbpf1 bpftool gcc libc6-dev qemu-system-x86 qemu-utils debootstrap cpio
          e2fsprogs openssh-client python3-yaml python3-venv shellcheck git prometheus)
# An arm64 test bed (BPFQUOTA_ARCH=arm64): its QEMU, qemu-user-static to run the image's programs
# while it is built (testbed/image.py registers it with binfmt_misc), and a cross gcc for wpath.
case ${BPFQUOTA_ARCH:-} in
  arm64 | aarch64) packages+=(qemu-system-arm qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv sees neither the machine's site-packages nor the user's, so no tool or module is taken
# from the machine by accident; its stamp is the requirements' digest and the interpreter's version.
# shellcheck source=scripts/venv.sh
. "$root/scripts/venv.sh"
# make_venv DIR REQUIREMENTS: DIR holds exactly the pins of REQUIREMENTS; its stamp is their digest
# and the interpreter's version, so it is made anew only when either changes.
make_venv() {
  local venv=$1 requirements=$2 stamp log
  stamp="$(sha256sum <"$requirements" | cut -d' ' -f1) $(python3 -VV 2>&1 | head -n 1)"
  [ "$(cat "$venv/.bpfquota-stamp" 2>/dev/null)" = "$stamp" ] && return 0
  echo "setup-host: installing ${requirements#"$root"/} into $venv"
  rm -rf "$venv"
  hash -r  # python3 may have been the venv's that is gone
  python3 -m venv "$venv"
  log=$(mktemp)
  if ! "$venv/bin/python3" -m pip install -q --disable-pip-version-check --no-input -r "$requirements" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2
    echo "setup-host: pip could not install $requirements (above); is the package index reachable?" >&2
    exit 1
  fi
  rm -f "$log"
  "$venv/bin/python3" -m pip check -q >/dev/null || {
    echo "setup-host: the packages of $requirements conflict (pip check); fix the pins" >&2
    exit 1
  }
  echo "$stamp" >"$venv/.bpfquota-stamp"
}
make_venv "$BPFQUOTA_VENV" "$root/scripts/requirements.txt"
# The oldest ansible-core the collection claims, for the sanity tests (scripts/lint.sh).
make_venv "$BPFQUOTA_VENV_OLDEST" "$root/scripts/requirements-oldest.txt"

# A checkout imports itself as ansible_collections.bpfquota.nfs (bin/bpfquota, tests, scripts)
# through this link. git doesn't track it: ansible-test's symlinks test refuses directory symlinks.
if [ ! -L "$root/ansible_collections/bpfquota/nfs" ]; then
  mkdir -p "$root/ansible_collections/bpfquota"
  ln -s ../.. "$root/ansible_collections/bpfquota/nfs"
fi

python3 "$root/scripts/check-host.py"
