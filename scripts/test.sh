#!/usr/bin/env bash
# The test command: static checks (scripts/lint.sh), host unit tests, the enforcement tests
# inside a QEMU VM on real NFS mounts, the role and rollout playbook run with ansible-playbook
# from this host against VMs, then the molecule scenarios (scripts/molecule.sh).
# Sets up everything it needs on a fresh Debian machine; ends with 'N passed, M failed'.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash scripts/setup-host.sh || exit 1
mkdir -p build
rm -f build/junit-*.xml build/molecule-*.log

BPFQUOTA_HOST_READY=1 bash scripts/lint.sh
python3 -m pytest -p no:cacheprovider tests/unit --junitxml=build/junit-unit.xml -q
assets=$(python3 scripts/build-assets.py) || exit 1
includes=()
for a in $assets; do includes+=(--include "$a"); done
python3 -m testbed pytest "${includes[@]}" --junit build/junit-vm.xml -- tests/vm -v -rfE
python3 -m pytest -p no:cacheprovider tests/role --junitxml=build/junit-role.xml -v -rfE
bash scripts/molecule.sh

python3 scripts/summarize-junit.py build/junit-lint-sanity.xml build/junit-lint-ansible-lint.xml \
  build/junit-unit.xml build/junit-vm.xml build/junit-role.xml build/junit-molecule-*.xml
