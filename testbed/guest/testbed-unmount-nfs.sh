#!/bin/sh
# Kill whatever uses an NFS mount, then unmount every NFS mount. Runs at poweroff and reboot
# while nfs-server is still up: a busy hard loopback mount would otherwise outlive the server
# and stall the shutdown for minutes.
set -u

for mnt in $(findmnt -rn -t nfs,nfs4 -o TARGET); do
    fuser -s -k -KILL -m "$mnt" || true
done

# Killed processes release their files asynchronously: retry before falling back to lazy.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    umount -a -t nfs,nfs4 2>/dev/null && exit 0
    sleep 0.5
done
umount -a -t nfs,nfs4 || umount -a -l -t nfs,nfs4
