#!/bin/sh
# Mount this VM's own NFS export over loopback: NFSv3 at /mnt/nfs3, NFSv4.2 at /mnt/nfs4.
# "testbed-mount-nfs SERVER" mounts another VM's export there instead (its private LAN address).
# Idempotent. "testbed-mount-nfs -u" unmounts both.
set -eu

SERVER=${1:-127.0.0.1}
V3_SOURCE="$SERVER:/srv/nfs"
V4_SOURCE="$SERVER:/"  # fsid=0 makes /srv/nfs the NFSv4 pseudo-root
WAIT_SECONDS=120

if [ "${1:-}" = "-u" ]; then
    for mnt in /mnt/nfs3 /mnt/nfs4; do
        if mountpoint -q "$mnt"; then umount "$mnt"; fi
    done
    exit 0
fi

server_ready() {
    rpcinfo -t "$SERVER" nfs 3 >/dev/null 2>&1 &&
        rpcinfo -t "$SERVER" nfs 4 >/dev/null 2>&1 &&
        rpcinfo -t "$SERVER" mountd 3 >/dev/null 2>&1 &&
        showmount -e "$SERVER" 2>/dev/null | grep -q '^/srv/nfs '
}

wait_for_server() {
    if [ "$SERVER" = 127.0.0.1 ]; then systemctl start nfs-server.service; fi
    waited=0
    until server_ready; do
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            echo "testbed-mount-nfs: NFS server not ready after $WAIT_SECONDS s" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

mount_once() {
    if mountpoint -q "$3"; then return 0; fi
    mount -t nfs -o "vers=$1" "$2" "$3"
}

wait_for_server
mount_once 3 "$V3_SOURCE" /mnt/nfs3
mount_once 4.2 "$V4_SOURCE" /mnt/nfs4
findmnt -t nfs,nfs4
