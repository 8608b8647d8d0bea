"""One-time install: the debian:bookworm-slim base image, built the way Debian's
own images are (debootstrap, then docker import): no container registry is
reachable here."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from . import pins
from .core import Context, DevEnvError, as_root, log, run_logged

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def present(ctx: Context) -> bool:
    try:
        return subprocess.run(["docker", "--host", ctx.docker_host, "image", "inspect", pins.BASE_IMAGE],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def safe_rm(path: Path) -> None:
    """A debootstrap that fails half-way can leave proc/sys/dev mounted inside the
    rootfs; a plain rm -rf would then walk into the host's /proc and /dev."""
    path = Path(path)
    if not str(path).strip("/") or not path.exists():
        return
    prefix = f"{path}/"
    with open("/proc/self/mounts") as f:
        mounts = sorted((line.split()[1] for line in f if line.split()[1].startswith(prefix)), reverse=True)
    for mnt in mounts:
        subprocess.run(as_root(["umount", "-l", mnt]), capture_output=True)
    subprocess.run(as_root(["rm", "-rf", "--one-file-system", str(path)]), check=False)


def _slim(ctx: Context, root: Path) -> None:
    # Deletes files, so it refuses anything but one of our temporary rootfs
    # directories: a wrong path here would strip the host instead.
    if not (root.parent == ctx.dev_dir and root.name.startswith("rootfs.")
            and (root / "usr/share").is_dir() and (root / "etc/debian_version").is_file()):
        raise DevEnvError(f"base image: refusing to trim '{root}': not a dev-env rootfs")
    script = r"""
r=$1
find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$r/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
rm -rf "$r"/usr/share/groff/* "$r"/usr/share/info/* "$r"/usr/share/linda/* "$r"/usr/share/locale/* \
    "$r"/usr/share/man/* "$r"/usr/share/lintian/overrides/* "$r"/var/lib/apt/lists/* \
    "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/log/*.log
"""
    subprocess.run(as_root(["bash", "-c", script, "slim", str(root)]), check=True)


class BaseImage:
    name = "base-image"
    one_time = True

    def ensure(self, ctx: Context, facts: dict) -> None:
        facts["base_image"] = pins.BASE_IMAGE
        if present(ctx):
            log(f"base image: {pins.BASE_IMAGE} present")
            return
        mirror = ctx.env.get("CLASSTOOLS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        security = ctx.env.get("CLASSTOOLS_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
        logfile = ctx.path("debootstrap.log")
        suite = pins.BASE_SUITE
        root = Path(tempfile.mkdtemp(prefix="rootfs.", dir=ctx.dev_dir))
        try:
            os.chmod(root, 0o755)  # becomes the image's /; mkdtemp made it 0700
            log(f"base image: debootstrap {suite} from {mirror} (a few minutes; log: {logfile})")
            run_logged(as_root(["debootstrap", "--variant=minbase", suite, str(root), mirror]), logfile,
                       f"base image: debootstrap {suite} from {mirror}")
            # Match the official image: deb822 sources including security updates,
            # "slim" dpkg excludes (docs, man pages, locales; copyrights stay), no
            # package lists or downloaded .debs baked in.
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
            keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
            (root / "etc/apt/sources.list.d/debian.sources").write_text(
                f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
                f"Signed-By: {keyring}\n\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\n"
                f"Components: main\nSigned-By: {keyring}\n")
            (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(
                "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
                "path-exclude /usr/share/groff/*\npath-exclude /usr/share/info/*\n"
                "path-exclude /usr/share/linda/*\npath-exclude /usr/share/lintian/overrides/*\n"
                "path-exclude /usr/share/locale/*\npath-exclude /usr/share/man/*\n")
            _slim(ctx, root)
            # The engine provides /dev, /proc and /sys at run time.
            tar = subprocess.Popen(["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*",
                                    "--exclude=./sys/*", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(["docker", "--host", ctx.docker_host, "import", "--change", 'CMD ["bash"]',
                                  "--change", f"ENV PATH={IMAGE_PATH}", "--message",
                                  f"debootstrap --variant=minbase {suite} (scripts/dev-env)", "-", pins.BASE_IMAGE],
                                 stdin=tar.stdout, capture_output=True, text=True)
            tar.stdout.close()
            if tar.wait() != 0 or imp.returncode != 0:
                raise DevEnvError(f"base image: docker import of the {suite} rootfs failed: "
                                  f"{imp.stderr.strip()[-500:]}")
        finally:
            safe_rm(root)
        log(f"base image: built {pins.BASE_IMAGE}")

    def stop(self, ctx: Context) -> None:
        pass

    def status(self, ctx: Context) -> list[tuple[str, str, str, bool]]:
        if present(ctx):
            return [("base-image", "present", pins.BASE_IMAGE, True)]
        return [("base-image", "missing", pins.BASE_IMAGE, False)]
