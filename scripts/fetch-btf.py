"""Fetch the BTF of each supported Debian kernel, for the unit tests that check the program's hooks.

Each kernel's image package comes from Debian's archive (`apt-get download`, with a private apt
state under /var/tmp/bpfquota-apt so the host's own sources are left alone); its BTF is cut out of
the decompressed vmlinuz and cached under /var/tmp/bpfquota-btf (override with BPFQUOTA_BTF_CACHE).
A cached BTF is used as is: nothing is downloaded again unless --refresh is given.

    python3 scripts/fetch-btf.py            # fetch what is missing, print name and path per kernel
    python3 scripts/fetch-btf.py --refresh  # fetch every kernel anew (a newer point release)

Needs root (apt-get update of the private lists) and Debian's archive; exit 1 naming what failed.
"""
import argparse
import json
import lzma
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

# name -> (Debian suite, architecture): the kernels the program is checked against.
KERNELS = {
    "debian12-amd64": ("bookworm", "amd64"),
    "debian12-arm64": ("bookworm", "arm64"),
    "debian12-backports-amd64": ("bookworm-backports", "amd64"),
    "debian13-amd64": ("trixie", "amd64"),
    "debian13-arm64": ("trixie", "arm64"),
}
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_DIR = pathlib.Path(os.environ.get("BPFQUOTA_APT_DIR", "/var/tmp/bpfquota-apt"))
CACHE = pathlib.Path(os.environ.get("BPFQUOTA_BTF_CACHE", "/var/tmp/bpfquota-btf"))

BTF_MAGIC = b"\x9f\xeb\x01\x00"  # little endian 0xeb9f, version 1, flags 0
BTF_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
# Compressed payloads a vmlinuz may carry (x86 bzImage: inside the setup code; arm64: the whole file).
PAYLOADS = (
    (b"\x1f\x8b\x08", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def btf_path(name, cache=CACHE):
    return cache / f"{name}.btf"


def find_btf(blob):
    """The largest well-formed BTF blob inside `blob` (the vmlinux's .BTF section), or None."""
    best = None
    at = blob.find(BTF_MAGIC)
    while at >= 0:
        if at + BTF_HEADER.size <= len(blob):
            hdr_len, type_off, type_len, str_off, str_len = BTF_HEADER.unpack_from(blob, at)[3:]
            end = at + hdr_len + max(type_off + type_len, str_off + str_len)
            strings = at + hdr_len + str_off
            if (hdr_len == 24 and type_off == 0 and str_off >= type_len and end <= len(blob)
                    and str_len and blob[strings:strings + 1] == b"\0"):
                if best is None or end - at > len(best):
                    best = blob[at:end]
        at = blob.find(BTF_MAGIC, at + 1)
    return best


def _decompress(kind, data):
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)
    # zstd: no module in Python before 3.14; the CLI stops at the frame's end with an error on trailing data.
    proc = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=False)
    return proc.stdout


def vmlinux_candidates(image):
    """Decompressed payloads of a vmlinuz, the image itself first (an uncompressed Image)."""
    yield image
    for magic, kind in PAYLOADS:
        at = image.find(magic)
        while at >= 0:
            try:
                out = _decompress(kind, image[at:])
            except (OSError, EOFError, lzma.LZMAError, zlib.error):
                out = b""
            if len(out) > 1 << 20:
                yield out
            at = image.find(magic, at + 1)


def btf_of_vmlinuz(image):
    for blob in vmlinux_candidates(image):
        btf = find_btf(blob)
        if btf and len(btf) > 1 << 20:
            return btf
    return None


def apt(*args, capture=True):
    env = dict(os.environ, APT_CONFIG=str(APT_DIR / "apt.conf"))
    return subprocess.run(["apt-get" if args[0] != "cache" else "apt-cache", *args[1:]], env=env,
                          capture_output=capture, text=True, check=True)


def setup_apt():
    """A private apt state with Debian's suites for both architectures."""
    (APT_DIR / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (APT_DIR / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (APT_DIR / "none").mkdir(exist_ok=True)
    suites = sorted({pair[0] for pair in KERNELS.values()})
    archs = sorted({pair[1] for pair in KERNELS.values()})
    opts = f"[arch={','.join(archs)} signed-by={KEYRING}]"
    (APT_DIR / "sources.list").write_text("".join(f"deb {opts} {MIRROR} {s} main\n" for s in suites))
    (APT_DIR / "apt.conf").write_text(
        f'Dir::Etc::sourcelist "{APT_DIR}/sources.list";\n'
        f'Dir::Etc::sourceparts "{APT_DIR}/none";\n'
        f'Dir::State::Lists "{APT_DIR}/lists";\n'
        f'Dir::Cache "{APT_DIR}/cache";\n'
        f'APT::Architectures {{ {" ".join(f"{chr(34)}{a}{chr(34)};" for a in archs)} }};\n'
        'Acquire::Languages "none";\n')
    apt("get", "update", "-q")


def image_package(suite, arch):
    """(package, version) of the kernel image the suite's linux-image-<arch> metapackage points at."""
    out = apt("cache", "show", f"linux-image-{arch}:{arch}/{suite}").stdout
    depends = next(line for line in out.splitlines() if line.startswith("Depends:"))
    first = depends.split(":", 1)[1].split(",")[0].strip()  # linux-image-6.1.0-50-amd64 (= 6.1.176-1)
    package, version = first.split(" (= ")
    return package, version.rstrip(")")


def fetch(name, suite, arch):
    package, version = image_package(suite, arch)
    with tempfile.TemporaryDirectory(dir=APT_DIR) as tmp:
        env = dict(os.environ, APT_CONFIG=str(APT_DIR / "apt.conf"))
        subprocess.run(["apt-get", "download", "-q", f"{package}:{arch}={version}"], cwd=tmp, env=env,
                       check=True, capture_output=True, text=True)
        deb = next(pathlib.Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp + "/root"], check=True)
        image = next(pathlib.Path(tmp, "root", "boot").glob("vmlinuz-*"))
        btf = btf_of_vmlinuz(image.read_bytes())
        release = image.name[len("vmlinuz-"):]
    if btf is None:
        raise RuntimeError(f"no BTF found in {package} {version}'s vmlinuz")
    CACHE.mkdir(parents=True, exist_ok=True)
    path = btf_path(name)
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_bytes(btf)
    os.replace(tmp_path, path)
    meta = {"suite": suite, "arch": arch, "package": package, "version": version, "release": release}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", action="store_true", help="fetch every kernel anew")
    parser.add_argument("names", nargs="*", help="kernels (default: all of %s)" % ", ".join(KERNELS))
    args = parser.parse_args(argv)
    names = args.names or list(KERNELS)
    missing = [n for n in names if args.refresh or not btf_path(n).is_file()]
    if missing:
        if not shutil.which("apt-get") or os.geteuid() != 0:
            print("fetch-btf: needs root and apt-get (Debian) to download the kernels: "
                  "run `sudo python3 scripts/fetch-btf.py`", file=sys.stderr)
            return 1
        try:
            setup_apt()
            for name in missing:
                fetch(name, *KERNELS[name])
        except (subprocess.CalledProcessError, RuntimeError, StopIteration) as err:
            detail = getattr(err, "stderr", "") or ""
            print(f"fetch-btf: {err} {detail.strip()}\nfetch-btf: needs Debian's archive ({MIRROR}); "
                  "retry `python3 scripts/fetch-btf.py` when it is reachable", file=sys.stderr)
            return 1
    for name in names:
        print(name, btf_path(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
