#!/usr/bin/env bash
# The test command: static checks (scripts/lint.sh), host unit tests, the enforcement tests
# inside a QEMU VM on real NFS mounts, the role and rollout playbook run with ansible-playbook
# from this host against VMs, then the molecule scenarios (scripts/molecule.sh).
# Sets up everything it needs on a fresh Debian machine; ends with 'N passed, M failed'.
#
# Two phases, each in parallel streams (every output line is prefixed with its stream's name):
#   1. lint | unit tests | the BPF objects and the test-bed image
#   2. role tests, molecule upgrade, VM tests on Debian 13 | VM tests on Debian 12, every other
#      molecule scenario (default, lsm_missing; reboot on Debian 13)
# A TCG VM runs on one host thread, and most of a stream's time is one VM's guest code, so
# two streams keep both cores busy. The streams are about equally long (see README).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash scripts/setup-host.sh || exit 1
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
mkdir -p build
rm -f build/junit-*.xml build/molecule-*.log build/assets.txt

stream() {  # stream NAME CMD...: run CMD with NAME before each output line; CMD's exit code
  local name=$1
  shift
  "$@" 2>&1 | sed -u "s/^/[$name] /"
  return "${PIPESTATUS[0]}"
}
started=$(date +%s)
elapsed() { local s=$(( $(date +%s) - started )); echo "$((s / 60))m$((s % 60))s"; }

# The test bed's image (cached) and what the VM tests copy into the VM.
assets_and_image() {
  python3 scripts/build-assets.py >build/assets.txt && python3 -m testbed image --release bookworm &&
    python3 -m testbed image --release trixie
}
vm_tests() {  # vm_tests RELEASE: the enforcement tests in a VM of that Debian release
  local assets includes=()
  read -ra assets <build/assets.txt
  for a in "${assets[@]}"; do includes+=(--include "$a"); done
  python3 -m testbed pytest --release "$1" --name "test-$1" "${includes[@]}" --junit "build/junit-vm-$1.xml" \
    -- tests/vm -v -rfE
}
role_tests() {
  python3 -m pytest -p no:cacheprovider tests/role --junitxml=build/junit-role.xml -v -rfE
}
first_stream() {
  stream role role_tests
  stream molecule-1 bash scripts/molecule.sh upgrade
  stream vm-trixie vm_tests trixie
}
second_stream() {
  stream vm-bookworm vm_tests bookworm
  stream molecule-2 bash scripts/molecule.sh --except upgrade
}

echo "phase 1: lint, unit tests, BPF objects and test-bed image"
BPFQUOTA_HOST_READY=1 stream lint bash scripts/lint.sh &
stream unit python3 -m pytest -p no:cacheprovider tests/unit --junitxml=build/junit-unit.xml -q &
stream image assets_and_image
image_rc=$?
wait
echo "phase 1 done at $(elapsed)"
if [ "$image_rc" -ne 0 ]; then
  echo "the BPF objects or the test-bed image could not be built: no VM test can run" >&2
  exit 1
fi

echo "phase 2: VM, role and molecule tests in two streams"
first_stream &
second_stream
wait
echo "phase 2 done at $(elapsed)"

python3 scripts/summarize-junit.py build/junit-lint-sanity-*.xml build/junit-lint-ansible-lint.xml \
  build/junit-unit.xml build/junit-vm-*.xml build/junit-role.xml build/junit-molecule-*.xml
