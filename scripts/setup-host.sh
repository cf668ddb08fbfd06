#!/usr/bin/env bash
# What the host needs to build the BPF object, run the VM test bed and the static checks
# (scripts/lint.sh: ansible-test sanity with shellcheck, ansible-lint) — Debian bookworm packages
# and PyPI only. Quick when everything is already installed.
set -euo pipefail
packages=(clang llvm libbpf-dev libbpf1 bpftool gcc libc6-dev qemu-system-x86 qemu-utils debootstrap cpio
          e2fsprogs openssh-client python3-yaml shellcheck git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -c 'import pytest, yaml' 2>/dev/null || python3 -m pip install -q pytest pyyaml
python3 -c 'import ansible' 2>/dev/null || python3 -m pip install -q "ansible-core>=2.17"
python3 -c 'import ansiblelint' 2>/dev/null || python3 -m pip install -q ansible-lint
python3 -c 'import molecule' 2>/dev/null || python3 -m pip install -q "molecule>=25.11"

# A checkout imports itself as ansible_collections.bpfquota.nfs (bin/bpfquota, tests, scripts)
# through this link. git doesn't track it: ansible-test's symlinks test refuses directory symlinks.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -L "$root/ansible_collections/bpfquota/nfs" ]; then
  mkdir -p "$root/ansible_collections/bpfquota"
  ln -s ../.. "$root/ansible_collections/bpfquota/nfs"
fi
