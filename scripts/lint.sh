#!/usr/bin/env bash
# Static checks of the collection, run by scripts/test.sh before the unit tests:
#  - ansible-test sanity with the pinned ansible-core and with the oldest one claimed
#    (build/venv-oldest), on a copy of the working tree (git's tracked and untracked-not-ignored
#    files, uncommitted changes included) placed at .../ansible_collections/bpfquota/nfs as
#    ansible-test requires; the tests that run per Python version (compile, import) run on every
#    Python 3.8-3.13 found, pyenv's installed versions included. tests/sanity/ignore-*.txt stay empty.
#  - ansible-lint, profile production (.ansible-lint), which also applies the yamllint rules.
# Each step writes build/junit-lint-<step>.xml for scripts/summarize-junit.py. Exits 1 when a
# step failed. Sets up what it needs (scripts/setup-host.sh) unless BPFQUOTA_HOST_READY=1.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
if [ "${BPFQUOTA_HOST_READY:-0}" != 1 ]; then
  bash scripts/setup-host.sh || exit 1
fi
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "lint: $root is not a git checkout: the files to check are git's" >&2
  exit 1
fi
mkdir -p build
rm -f build/junit-lint-*.xml
work=$(mktemp -d /tmp/bpfquota-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=0

# Python interpreters for the per-version sanity tests: the ones on PATH, plus pyenv's.
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin; do
  [ -d "$dir" ] && PATH="$PATH:$dir"
done
export PATH
versions=()
for v in 3.8 3.9 3.10 3.11 3.12 3.13; do
  command -v "python$v" >/dev/null 2>&1 && "python$v" -c '' 2>/dev/null && versions+=("$v")
done

step() {  # step NAME RC LOG: record the result of a step that has no report of its own
  python3 scripts/summarize-junit.py --record "build/junit-lint-$1.xml" "$1" "$2" "$3"
  if [ "$2" -ne 0 ]; then failed=1; fi
}

# --- ansible-test sanity, on the same copy, with the pinned ansible-core and with the oldest one
# meta/runtime.yml claims (requires_ansible).
collection="$work/ansible_collections/bpfquota/nfs"
mkdir -p "$collection"
git ls-files -z --cached --others --exclude-standard \
  | python3 -c 'import os, sys; sys.stdout.write("".join(p + "\0" for p in sys.stdin.read().split("\0") if p and os.path.lexists(p)))' \
  | tar --null -T - -cf - | tar -C "$collection" -xf -
git -C "$collection" init -q  # ansible-test lists the files through git: untracked, not ignored

# ansible-test puts pip into its venvs with a get-pip script downloaded from a host this machine can't
# reach (only package registries are). Where that script isn't cached yet, cache a stand-in: CPython's
# ensurepip, then the pinned pip ansible-test asks for, from the package index.
cache_get_pip() {  # cache_get_pip PYTHON: for the ansible-test that PYTHON imports
  local pip_version get_pip
  pip_version=$("$1" -c 'import os, re, ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
print(re.search(r"pip=.([0-9.]+).", open(path).read()).group(1))' 2>/dev/null)
  get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
  [ -z "$pip_version" ] || [ -e "$get_pip" ] && return 0
  mkdir -p "$(dirname "$get_pip")"
  cat >"$get_pip" <<'EOF2'
# Stand-in for ansible-test's get-pip bootstrap script, cached by bpfquota's scripts/lint.sh:
# CPython's bundled pip, which then installs the pip asked for (checking TLS against the system's
# CA bundle, as newer pips do through truststore).
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap()
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
cafile = "/etc/ssl/certs/ca-certificates.crt"
cert = ["--cert", cafile] if os.path.isfile(cafile) else []
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + cert + args))
EOF2
}

sanity() {  # sanity VENV: ansible-test sanity of that venv's ansible-core; build/junit-lint-sanity-<version>.xml
  local venv=$1 version rc junit started=$SECONDS
  version=$("$venv/bin/python3" -c 'from ansible.release import __version__; print(__version__)')
  cache_get_pip "$venv/bin/python3"
  rm -rf "$collection/tests/output"
  echo "lint: ansible-test sanity, ansible-core $version (Python ${versions[*]})"
  (cd "$collection" && PATH="$venv/bin:$PATH" ansible-test sanity --junit --color no) >"$work/sanity.log" 2>&1
  rc=$?
  grep -E '^(ERROR|FATAL|WARNING: Skipping)' "$work/sanity.log" | awk '!seen[$0]++'
  junit=("$collection"/tests/output/junit/*.xml)
  [ -e "${junit[0]}" ] || junit=()
  python3 scripts/summarize-junit.py --merge "build/junit-lint-sanity-$version.xml" "ansible-test-sanity-$version" \
    "$rc" "${junit[@]}"
  if [ "$rc" -ne 0 ]; then
    failed=1
    grep -qE '^(ERROR|FATAL)' "$work/sanity.log" || tail -n 20 "$work/sanity.log"
  fi
  echo "lint: ansible-test sanity, ansible-core $version: exit $rc, $((SECONDS - started))s"
}
sanity "$BPFQUOTA_VENV"
sanity "$BPFQUOTA_VENV_OLDEST"

# --- ansible-lint, on the same copy: the collection is found at its ansible_collections path, and
# its own ANSIBLE_HOME keeps a copy of the collection installed in ~/.ansible from standing in for it.
started=$SECONDS
echo "lint: ansible-lint (profile production)"
(cd "$collection" && ANSIBLE_HOME="$work/ansible-home" ANSIBLE_COLLECTIONS_PATH="$work" \
  ansible-lint --offline --nocolor) >"$work/ansible-lint.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then cat "$work/ansible-lint.log"; else grep -E '^(Passed|Failed)' "$work/ansible-lint.log"; fi
step ansible-lint "$rc" "$work/ansible-lint.log"
echo "lint: ansible-lint: exit $rc, $((SECONDS - started))s"

cd "$root" || exit 1
exit "$failed"
