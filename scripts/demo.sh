#!/usr/bin/env bash
# The main job: the bpfquota.nfs.rollout playbook run against a fleet of local VMs (test bed),
# a write refused past a limit, and each host's report. --keep leaves the VMs running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
exec python3 scripts/demo.py "$@"
