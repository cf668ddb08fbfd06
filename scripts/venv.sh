# Sourced (by scripts/setup-host.sh, the test command, the main job): the venv of the pinned Python
# tools (scripts/requirements.txt) first on PATH, and no Python package from the user's site.
# BPFQUOTA_VENV places it elsewhere than the checkout's build/venv.
# shellcheck shell=bash
BPFQUOTA_VENV=${BPFQUOTA_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/venv}
case ":$PATH:" in
  *":$BPFQUOTA_VENV/bin:"*) ;;
  *) PATH="$BPFQUOTA_VENV/bin:$PATH" ;;
esac
export BPFQUOTA_VENV PATH VIRTUAL_ENV=$BPFQUOTA_VENV PYTHONNOUSERSITE=1
