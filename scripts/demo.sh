#!/usr/bin/env bash
# The main job: a local VM with an NFS share, two volumes with quotas, a refused write, the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
python3 scripts/build-assets.py >/dev/null
exec python3 scripts/demo.py
