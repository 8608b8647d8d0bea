"""Credentials of the dev control plane, made with the openssl CLI (an apt
package of the dev environment): a CA, the API server's serving certificate,
a service-account key pair and one client certificate per component.

Private keys and kubeconfigs are 0600 in a 0700 directory and never printed.
They are made once and kept, so tokens and kubeconfigs stay valid across
`down`/`up`; a missing file (or a CA that no longer signs them) remakes them all.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from .core import DevEnvError, atomic_write

# The first address of the service range: in-cluster clients reach the API at
# kubernetes.default, whose ClusterIP this is.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_NAME = "classtools-dev"

# client certificate name -> (CN, O). system:kube-controller-manager and
# system:kube-scheduler have their own default RBAC roles; kwok and the
# provisioner drive fake nodes and volumes and get cluster-admin.
CLIENTS = {
    "admin": ("classtools-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", ""),
    "scheduler": ("system:kube-scheduler", ""),
    "kwok": ("classtools-kwok", "system:masters"),
    "provisioner": ("classtools-provisioner", "system:masters"),
}


def _openssl(args: list[str], what: str) -> None:
    try:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DevEnvError("control plane: openssl is missing (the apt step installs it)") from None
    if proc.returncode != 0:
        raise DevEnvError(f"control plane: openssl failed making {what}: {proc.stderr.strip()[-500:]}")


def _key(path: Path, what: str, rsa: bool = False) -> None:
    spec = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if rsa else \
        ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    old = os.umask(0o077)
    try:
        _openssl(["genpkey", *spec, "-out", str(path)], what)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)


def _sign(pki: Path, name: str, subject: str, extensions: str, days: int = 3650) -> None:
    key, csr, crt, ext = (pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt", pki / f"{name}.ext")
    _key(key, f"the {name} key")
    _openssl(["req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)], f"the {name} request")
    atomic_write(ext, extensions, 0o600)
    _openssl(["x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
              "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", str(ext), "-out", str(crt)],
             f"the {name} certificate")
    csr.unlink()
    ext.unlink()
    os.chmod(crt, 0o600)


def _subject(cn: str, org: str) -> str:
    return (f"/O={org}" if org else "") + f"/CN={cn}"


def files(pki: Path) -> list[Path]:
    names = ["ca.crt", "ca.key", "sa.key", "sa.pub", "apiserver.crt", "apiserver.key"]
    names += [f"{c}.{ext}" for c in CLIENTS for ext in ("crt", "key")]
    return [pki / n for n in names]


def _complete(pki: Path) -> bool:
    if not all(f.is_file() for f in files(pki)):
        return False
    # All leaves must come from this CA (a half-made earlier run could have mixed them).
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"),
                           *[str(pki / f"{n}.crt") for n in ("apiserver", *CLIENTS)]],
                          capture_output=True, text=True)
    return proc.returncode == 0


def ensure(pki: Path) -> bool:
    """Makes the credentials unless complete; True when new ones were made."""
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    if _complete(pki):
        return False
    for old in pki.iterdir():
        old.unlink()
    _key(pki / "ca.key", "the CA key")
    _openssl(["req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", f"/CN={CLUSTER_NAME}-ca",
              "-days", "3650", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
              "-out", str(pki / "ca.crt")], "the CA certificate")
    os.chmod(pki / "ca.crt", 0o600)
    sans = ",".join(["IP:127.0.0.1", f"IP:{KUBERNETES_SERVICE_IP}", "DNS:localhost", "DNS:kubernetes",
                     "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                     "DNS:kubernetes.default.svc.cluster.local"])
    _sign(pki, "apiserver", "/CN=kube-apiserver",
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
          f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    for name, (cn, org) in CLIENTS.items():
        _sign(pki, name, _subject(cn, org),
              "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=clientAuth\n")
    # The service-account signing pair (RS256, what every client expects).
    _key(pki / "sa.key", "the service-account key", rsa=True)
    _openssl(["pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
             "the service-account public key")
    os.chmod(pki / "sa.pub", 0o600)
    (pki / "ca.srl").unlink(missing_ok=True)
    return True


def ensure_client(pki: Path, name: str, cn: str, org: str = "") -> None:
    """A client certificate NAME.crt/.key signed by the CA, for a component outside
    CLIENTS (the real node's kubelet and kube-proxy); remade when missing or when the
    CA no longer signs it."""
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if crt.is_file() and key.is_file():
        proc = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(crt)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return
    _sign(pki, name, _subject(cn, org),
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=clientAuth\n", days=365)
    (pki / "ca.srl").unlink(missing_ok=True)


def kubeconfig(pki: Path, client: str, server: str, embed: bool) -> str:
    """A kubeconfig for CLIENT. EMBED puts the certificates inline (the admin
    kubeconfig handed to users and tests is self-contained); components read files."""
    def ref(key: str, path: Path) -> str:
        if embed:
            return f"{key}-data: {base64.b64encode(path.read_bytes()).decode()}"
        return f"{key}: {path}"
    return "\n".join([
        "# Written by scripts/dev-env; rewritten by every `up`.",
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        f"- name: {CLUSTER_NAME}",
        "  cluster:",
        f"    server: {server}",
        f"    {ref('certificate-authority', pki / 'ca.crt')}",
        "users:",
        f"- name: {CLUSTER_NAME}-{client}",
        "  user:",
        f"    {ref('client-certificate', pki / f'{client}.crt')}",
        f"    {ref('client-key', pki / f'{client}.key')}",
        "contexts:",
        f"- name: {CLUSTER_NAME}",
        "  context:",
        f"    cluster: {CLUSTER_NAME}",
        f"    user: {CLUSTER_NAME}-{client}",
        f"current-context: {CLUSTER_NAME}",
        "",
    ])
