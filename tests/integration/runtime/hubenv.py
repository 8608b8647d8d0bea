"""A Python environment with exactly the hub image's libraries, made once per machine.

The runtime tests load the rendered values with the hub's own code, so the
versions must be the ones quay.io/jupyterhub/k8s-hub:4.4.0 ships (the shared
README lists them), not whatever the project's own venv has.  The venv lives
outside the checkout, keyed by a hash of the pins: a new pin makes a new venv,
the same pins reuse it (seconds instead of a minute of pip).  It is built in a
temporary directory beside its final place and renamed into place, so a run
that dies half way, or two runs side by side, never leave a broken one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The hub image's own pins (z2jh 4.4.0, images/hub/requirements.in).
HUB_PINS = (
    "jupyterhub==5.5.0",
    "jupyterhub-kubespawner==7.0.0",
    "jupyterhub-ldapauthenticator==2.0.2",
    "jupyterhub-ltiauthenticator==1.6.3",
    "oauthenticator==17.4.0",
    "jupyterhub-idle-culler==1.4.0",
)
# What the chart's files/hub/jupyterhub_config.py and z2jh.py import beyond those:
# PyYAML (z2jh.py reads the mounted values) and pycurl (the config switches tornado
# to its curl client).  kubernetes_asyncio comes with kubespawner's own pin.
CONFIG_IMPORTS = ("PyYAML==6.0.4", "pycurl==7.49.0")
PINS = HUB_PINS + CONFIG_IMPORTS
# A cold pip install of these is about a minute on an idle machine; a loaded CI
# machine, several times that.
PIP_TIMEOUT = 1800


def cache_root() -> Path:
    """Outside the checkout and shared by every clone on the machine."""
    configured = os.environ.get("CLASSTOOLS_CACHE_DIR")
    if configured:
        return Path(configured)
    system = Path("/var/cache/classtools")
    try:
        system.mkdir(parents=True, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return Path.home() / ".cache" / "classtools"


def venv_key(pins=PINS, python=sys.version_info) -> str:
    text = "\n".join([f"python{python[0]}.{python[1]}", *sorted(pins)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hub_venv(pins=PINS) -> Path:
    """The venv directory (bin/python, bin/jupyterhub), made if it is not there yet."""
    root = cache_root()
    target = root / f"hub-venv-{venv_key(pins)}"
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".hub-venv-building-", dir=root))
    try:
        # The venv's scripts carry their own path in their #! lines, so it is built
        # under its final name's sibling and only the directory entry moves: that is
        # why `--copies` is not enough and the venv is re-rooted after the rename.
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True,
                       capture_output=True, text=True)
        result = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install",
                                 "--disable-pip-version-check", "--no-input", *pins],
                                capture_output=True, text=True, timeout=PIP_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not install the hub's pins {' '.join(pins)}:\n"
                               + "\n".join(result.stderr.splitlines()[-30:]))
        _reroot(building, target)
        (building / ".complete").write_text("\n".join(pins) + "\n")
        try:
            os.rename(building, target)
        except OSError:
            if not (target / ".complete").exists():  # not a twin run that got there first
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return target


def _reroot(building: Path, target: Path):
    """Point the #! lines and activate scripts at the final path before the rename."""
    old, new = str(building), str(target)
    for path in (building / "bin").iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old.encode() in data[:4096]:
            path.write_bytes(data.replace(old.encode(), new.encode()))
    config = building / "pyvenv.cfg"
    config.write_text(config.read_text().replace(old, new))


def python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def versions(venv: Path, *distributions: str) -> dict[str, str]:
    """Installed versions, as the venv's own importlib.metadata sees them."""
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))")
    out = subprocess.run([python(venv), "-c", code, *distributions], check=True,
                         capture_output=True, text=True).stdout
    import json
    return json.loads(out)
