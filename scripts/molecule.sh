#!/usr/bin/env bash
# The molecule scenarios on test-bed VMs, one by one (molecule test -s NAME): each gets
# build/molecule-NAME.log and a JUnit report build/junit-molecule-NAME.xml, and its time is printed.
#   bash scripts/molecule.sh [SCENARIO...]      (default: every molecule/*/molecule.yml, default first)
#   bash scripts/molecule.sh --except SCENARIO  (all of them but that one)
# Exits non-zero when any scenario fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
mkdir -p build
all_scenarios() {  # every scenario directory, default first: a new scenario runs without editing this
  local file name
  echo default
  for file in molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$file")")
    [ "$name" != default ] && echo "$name"
  done
}
if [ "${1:-}" = --except ]; then
  mapfile -t scenarios < <(all_scenarios | grep -vxF "${2:?--except needs a scenario name}")
elif [ $# -gt 0 ]; then
  scenarios=("$@")
else
  mapfile -t scenarios < <(all_scenarios)
fi
# the pinned molecule and ansible-core of scripts/requirements.txt (scripts/setup-host.sh)
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
# molecule finds the collection through the checkout's ansible_collections/ link
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
status=0
for scenario in "${scenarios[@]}"; do
  log="build/molecule-$scenario.log"
  started=$(date +%s)
  echo "molecule: $scenario ..."
  molecule test -s "$scenario" </dev/null >"$log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - started ))
  if [ "$rc" -eq 0 ]; then
    echo "molecule: $scenario passed in $((seconds / 60))m$((seconds % 60))s"
  else
    status=1
    echo "molecule: $scenario FAILED (exit $rc) in $((seconds / 60))m$((seconds % 60))s; the end of $log:"
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -v 'RETRYING\|retries$\|^\s*│\?\s*left).$' | tail -60
  fi
  python3 scripts/summarize-junit.py --record "build/junit-molecule-$scenario.xml" "molecule $scenario" "$rc" "$log"
done
exit $status
