"""QEMU test bed for bpfquota: build a cached Debian image, boot VMs, run tests in them.

The host kernel can neither run BPF LSM programs nor serve NFS, so every enforcement
test runs inside a VM booted by this package. See ``python3 -m testbed --help``.
"""

from testbed.image import Image, ImageBuildError, Recipe, cache_root, ensure_image
from testbed.vm import VM, BootError, CommandError, CommandTimeout, RunResult, VMError

__all__ = [
    "VM",
    "BootError",
    "CommandError",
    "CommandTimeout",
    "Image",
    "ImageBuildError",
    "Recipe",
    "RunResult",
    "VMError",
    "cache_root",
    "ensure_image",
]
