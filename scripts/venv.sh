# Sourced (by scripts/setup-host.sh, the test command, the main job): the venv of the pinned Python
# tools (scripts/requirements.txt) first on PATH, and no Python package from the user's site.
# BPFQUOTA_VENV places it elsewhere than the checkout's build/venv. BPFQUOTA_VENV_OLDEST (not on
# PATH; build/venv-oldest beside it) holds the oldest ansible-core claimed, for the sanity tests.
# shellcheck shell=bash
BPFQUOTA_VENV=${BPFQUOTA_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/venv}
BPFQUOTA_VENV_OLDEST=${BPFQUOTA_VENV_OLDEST:-$BPFQUOTA_VENV-oldest}
case ":$PATH:" in
  *":$BPFQUOTA_VENV/bin:"*) ;;
  *) PATH="$BPFQUOTA_VENV/bin:$PATH" ;;
esac
export BPFQUOTA_VENV BPFQUOTA_VENV_OLDEST PATH VIRTUAL_ENV=$BPFQUOTA_VENV PYTHONNOUSERSITE=1
