#!/bin/sh
# Per-VM settings the host passes with QEMU's -fw_cfg (opt/bpfquota/*): the hostname, and the
# MAC and address of the NIC on the private LAN. Runs at every boot, before systemd-networkd.
set -eu
FW_CFG=/sys/firmware/qemu_fw_cfg/by_name/opt/bpfquota
modprobe qemu_fw_cfg 2>/dev/null || true

setting() {
    [ -r "$FW_CFG/$1/raw" ] && cat "$FW_CFG/$1/raw"
}

if name=$(setting hostname); then
    hostname "$name"
    echo "$name" >/etc/hostname
    sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1 $name/" /etc/hosts
fi

if mac=$(setting lan-mac) && address=$(setting lan-address); then
    mkdir -p /run/systemd/network
    cat >/run/systemd/network/10-testbed-lan.network <<EOF
[Match]
MACAddress=$mac

[Link]
RequiredForOnline=no

[Network]
Address=$address
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
fi
