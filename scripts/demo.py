"""The main job: boot a local VM (NFS server and client in one), load the enforcer,
put quotas on two volumes of the NFS share, show a refused write and the report."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.vm import VM  # noqa: E402
from testbed.workspace import source_files  # noqa: E402

# The import link ansible_collections/bpfquota/nfs isn't tracked by git: included like a build product.
ASSETS = ["build/bpfquota.bpf.o", "ansible_collections/bpfquota/nfs"]
VOLUMES = """\
volumes:
  - path: /mnt/nfs4/pvs/pv-web
    limit: 8Mi
  - path: /mnt/nfs4/pvs/pv-db
    limit: 64Mi
    inodes: 1000
"""
SCRIPT = """\
set -e
cd /root/bpfquota
testbed-mount-nfs >/dev/null
mkdir -p /srv/nfs/pvs/pv-web /srv/nfs/pvs/pv-db
cat > /etc/bpfquota-volumes.yaml <<'EOF'
{volumes}EOF
step() {{ printf '\\n$ %s\\n' "$*"; "$@"; }}
step bin/bpfquota check
step bin/bpfquota load --object build/bpfquota.bpf.o
step bin/bpfquota apply /etc/bpfquota-volumes.yaml
step dd if=/dev/zero of=/mnt/nfs4/pvs/pv-db/data bs=1M count=5 status=none
printf '\\n$ dd if=/dev/zero of=/mnt/nfs4/pvs/pv-web/fill bs=1M count=20\\n'
if dd if=/dev/zero of=/mnt/nfs4/pvs/pv-web/fill bs=1M count=20 status=none; then
  echo "ERROR: the write past the 8Mi limit was not refused" >&2; exit 1
fi
step ls -l /mnt/nfs4/pvs/pv-web
step bin/bpfquota report
"""


def main():
    os.chdir(ROOT)
    with VM.boot("demo") as vm:
        vm.put_files(ROOT, source_files(ROOT, ASSETS), "/root/bpfquota")
        rc = vm.stream(["bash", "-c", SCRIPT.format(volumes=VOLUMES)], timeout=900)
    return rc


if __name__ == "__main__":
    sys.exit(main())
