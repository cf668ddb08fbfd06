#!/usr/bin/env bash
# Build the collection artifact bpfquota-nfs-<version>.tar.gz into OUTDIR (default build/collection)
# and print its path. Installed with `ansible-galaxy collection install`, it runs the rollout on a
# controller without clang: besides the BPF sources, the CLI (bin/bpfquota) and module_utils, it
# carries bpf/prebuilt/bpfquota.bpf.o (x86_64) and bpf/prebuilt/bpfquota-arm64.bpf.o (aarch64), compiled
# here from those sources, and beside each the digest of the sources and flags it came from (bpf_build
# copies the one for the host's architecture when the digest matches).
# bpf/prebuilt/ stays out of git. The artifact holds git's tracked and untracked-not-ignored files
# (uncommitted changes included) plus bpf/prebuilt/; galaxy.yml's build_ignore applies on top.
#   bash scripts/build-collection.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
out=$(realpath -m "${1:-build/collection}")

# bpfbuild.py needs nothing but the standard library: imported from its directory, it works
# without the checkout's ansible_collections link.
python3 -c 'import sys
sys.path.insert(0, "plugins/module_utils")
import bpfbuild
for arch in sorted(bpfbuild.ARCHES):
    try:
        r = bpfbuild.build("bpf", "bpf/" + bpfbuild.prebuilt_path(arch), prebuilt=False, arch=arch)
    except bpfbuild.BuildError as e:
        sys.exit("build-collection: %s" % e)
    sys.stderr.write("build-collection: %s %s for %s (sha256 %s)\n" % (
        "built" if r["changed"] else "up to date", r["path"], arch, r["sha256"]))'

stage=$(mktemp -d /tmp/bpfquota-collection.XXXXXX)
trap 'rm -rf "$stage"' EXIT
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard \
    | python3 -c 'import os, sys; sys.stdout.write("".join(p + "\0" for p in sys.stdin.read().split("\0") if p and os.path.lexists(p)))' \
    | tar --null -T - -cf - | tar -C "$stage" -xf -
  mkdir -p "$stage/bpf/prebuilt"
  cp -p bpf/prebuilt/bpfquota.bpf.o bpf/prebuilt/bpfquota.bpf.o.digest \
    bpf/prebuilt/bpfquota-arm64.bpf.o bpf/prebuilt/bpfquota-arm64.bpf.o.digest "$stage/bpf/prebuilt/"
  src=$stage
else
  src=.  # not a git checkout (an unpacked source tree): build_ignore alone decides
fi
mkdir -p "$out"
log=$(ansible-galaxy collection build --force --output-path "$out" "$src") || exit 1
artifact=$(printf '%s\n' "$log" | sed -n 's/^Created collection for .* at //p')
if [ ! -f "$artifact" ]; then
  printf '%s\n' "$log" >&2
  echo "build-collection: ansible-galaxy made no artifact" >&2
  exit 1
fi
echo "$artifact"
