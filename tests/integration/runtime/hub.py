"""The real hub, loading the rendered release: the chain's chart, helm's manifests, z2jh's own code.

1. A test project (config/, helm/, images/ copied like test_real_images.py)
   names the real z2jh chart as its dependency; the real `doit chart:package`
   packages the classroom chart.
2. `helm template` renders that package with the two values documents the
   release task gives `helm upgrade` (public, secret).
3. The hub ConfigMap and Secret from those manifests are laid out in a private
   directory exactly as z2jh's hub Deployment mounts them
   (/usr/local/etc/jupyterhub/{jupyterhub_config.py, z2jh.py, config/, secret/}),
   and the real `jupyterhub` (hub venv, exact image pins) starts with the
   chart's own jupyterhub_config.py, in private mount and pid namespaces
   (`unshare --mount --pid --fork`) where a directory holding that
   jupyterhub/ is bind-mounted over /usr/local/etc (the host has no
   /usr/local/etc/jupyterhub to mount over, and none is made) and a hosts
   file over /etc/hosts: nothing on the host changes, several hubs run side
   by side, and whatever a hub starts ends with it.
4. Debian's configurable-http-proxy runs as z2jh's proxy Deployment runs it,
   with the token from the same Secret.

What differs from a pod, and why:
- Names: z2jh's config connects to `http://hub:$HUB_SERVICE_PORT` and
  `http://proxy-api:$PROXY_API_SERVICE_PORT` (Kubernetes Service names); the
  private /etc/hosts maps those names to 127.0.0.1 and the *_SERVICE_* env
  carries this run's free ports, as Kubernetes would set them.
- The hub's bind port: z2jh's config binds `http://:8081`, which in a pod is
  the pod's own network; here the loopback is shared with other runs, so
  `--JupyterHub.hub_bind_url=http://127.0.0.1:<free port>` is added on the
  command line (traitlets lets the command line win over the config file).
  The idle culler, which z2jh points at localhost:8081, is therefore not
  reachable here; it is not under test.
- No Kubernetes API server: a user's KubeSpawner is created on login (the
  redirect to the user's server asks for it) and loads a client config then;
  the hub gets a kubeconfig naming an address where nothing listens instead of
  a pod's service account.  Loading it is all a login needs; no code is
  patched.  Starting a server would need the API (a later issue brings one);
  spawn.py builds the pod manifest from the same loaded config without it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path

import yaml

from tests.conftest import Project

REPO = Path(__file__).resolve().parents[3]
# The tree the harness takes config/, helm/, images/, dodo.py and tasks/ from: the
# checkout itself, or (CLASSTOOLS_RUNTIME_SOURCE) an exported older commit, to show
# that a test fails on the values as they were.
SOURCE = Path(os.environ.get("CLASSTOOLS_RUNTIME_SOURCE") or REPO)
JUPYTERHUB_CHART = REPO.parent / "shared" / "upstream" / "jupyterhub-4.4.0.tgz"
ETC = "/usr/local/etc"              # z2jh mounts its files under ETC/jupyterhub
HUB_ETC = f"{ETC}/jupyterhub"
CHP = "/usr/bin/configurable-http-proxy"
# Debian's proxy finds its modules through Debian's node; a node from elsewhere earlier on
# PATH (NodeSource's, on these machines) does not search Debian's module directories.
NODE_PATH = "/usr/share/nodejs:/usr/lib/nodejs"
# A cold hub start (sqlite schema, alembic, imports of the whole stack) takes seconds, far
# longer on a loaded 2-core machine: the wait follows the hub's log, and gives up only when
# it has been silent this long, or at the overall cap.
QUIET_LIMIT = 180
START_LIMIT = 900
# Each is an object z2jh's config reads through get_name / get_name_env.
SERVICE_NAMES = ("hub", "proxy-api", "proxy-public")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- 1. a test project packaged by the real chain --------------------------------------------

def _merge(base: dict, overlay: dict) -> dict:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


@dataclass
class ClassroomProject(Project):
    """A classroom project on disk (tests.conftest.Project), run through the real `doit` of SOURCE."""
    registry: str = ""
    helm: str = ""

    def env(self, **extra) -> dict:
        return super().env(CLASSTOOLS_HELM=self.helm, PYTHONPATH=str(SOURCE), **extra)

    def configure(self, classroom: dict | None = None, courses: list | None = None):
        """Deep-merge `classroom` into the copied classroom.yaml; replace the courses."""
        if classroom:
            path = self.config / "classroom.yaml"
            path.write_text(yaml.safe_dump(_merge(yaml.safe_load(path.read_text()), classroom),
                                           sort_keys=False))
        if courses is not None:
            (self.config / "courses.yaml").write_text(yaml.safe_dump({"courses": courses}, sort_keys=False))

    def doit(self, *args, env: dict | None = None) -> subprocess.CompletedProcess:
        from tests.conftest import _run_while_talking
        command = [sys.executable, "-m", "doit", "-f", str(SOURCE / "dodo.py"), "-d", str(self.root), *args]
        result = _run_while_talking(command, f"doit {' '.join(args)}", cwd=self.root,
                                    env=self.env(**(env or {})), quiet_limit=600, overall_limit=3600)
        if result.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def task_values(self, task: str) -> dict:
        return json.loads(self.dep_file.read_text())[task]["_values_:"]


def new_project(root: Path, registry: str, helm: str, chart: Path = JUPYTERHUB_CHART) -> ClassroomProject:
    if not chart.is_file():
        raise AssertionError(f"the real JupyterHub chart is missing: {chart}")
    project = ClassroomProject(root=root, registry=registry, helm=helm)
    for part in ("config", "helm", "images"):
        shutil.copytree(SOURCE / part, root / part)
    project.configure({"images": {"registry": f"{registry}/runtime"},
                       "chart": {"jupyterhub_chart": str(chart), "jupyterhub_version": "4.4.0"}})
    return project


def package(project: ClassroomProject) -> Path:
    """`doit chart:package` (and the image tasks it needs): the packaged classroom chart."""
    project.doit("chart:package")
    values = project.task_values("chart:package")
    if "path" not in values:
        raise AssertionError(f"chart:package made no chart: {values}")
    return Path(values["path"])


# ---- 2. the release values and helm's manifests ----------------------------------------------

# Runs in SOURCE's tasks (a subprocess: the project's env, its own secrets file).
_RELEASE_VALUES = r"""
import json, sys
from tasks.config import loader as classroom_config
config = classroom_config.load()
from tasks.release import factory as release
if hasattr(release, "hub_release_values"):
    public, secret = release.hub_release_values(config)
else:  # the release module before hub_release_values: the same two documents, by hand
    from tasks.release import spec as releasespec
    db = json.load(open(sys.argv[1]))["image:db"]["_values_:"]["ref"]
    public, secret = releasespec.release_values(config, db), release._secret_values(config)
json.dump({"public": public, "secret": secret}, sys.stdout)
"""


def release_documents(project: ClassroomProject, env: dict | None = None) -> tuple[dict, dict]:
    """(public, secret): exactly the values documents release:jupyterhub gives `helm upgrade`."""
    result = subprocess.run([sys.executable, "-c", _RELEASE_VALUES, str(project.dep_file)], cwd=project.root,
                            env=project.env(**(env or {})), capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"computing the release values failed:\n{result.stderr[-3000:]}")
    documents = json.loads(result.stdout)
    return documents["public"], documents["secret"]


@dataclass
class Rendered:
    manifests: list[dict] = field(repr=False)   # the hub Secret is among them
    release: str = ""
    namespace: str = ""
    public: dict = field(default_factory=dict, repr=False)

    def find(self, kind: str, name: str) -> dict:
        for doc in self.manifests:
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return doc
        have = sorted(f"{d.get('kind')}/{d['metadata']['name']}" for d in self.manifests)
        raise AssertionError(f"no {kind} {name} in the rendered manifests; they have: {have}")

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.manifests if d.get("kind") == kind]

    @property
    def hub_values(self) -> dict:
        """The values z2jh's hub code loads (the hub Secret's values.yaml)."""
        return yaml.safe_load(secret_data(self.find("Secret", hub_object_name(self)))["values.yaml"])


def secret_data(secret: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def hub_object_name(rendered: Rendered) -> str:
    """z2jh's name for the hub's ConfigMap/Secret/Service (its ConfigMap says, under key `hub`)."""
    for doc in rendered.all("ConfigMap"):
        data = doc.get("data") or {}
        if "jupyterhub_config.py" in data and "z2jh.py" in data:
            return doc["metadata"]["name"]
    raise AssertionError("the rendered manifests have no hub ConfigMap with jupyterhub_config.py")


def render(project: ClassroomProject, chart: Path, env: dict | None = None) -> Rendered:
    """`helm template` of the packaged chart with the release's two values documents."""
    public, secret = release_documents(project, env)
    config = yaml.safe_load((project.config / "classroom.yaml").read_text())
    release, namespace = config["release"]["name"], config["release"]["namespace"]
    with tempfile.TemporaryDirectory(prefix="classtools-runtime-values-") as tmp:
        files = []
        for name, document in (("public", public), ("secret", secret)):
            path = Path(tmp) / f"{name}.yaml"
            path.touch(mode=0o600)
            path.write_text(yaml.safe_dump(document))
            files += ["-f", str(path)]
        result = subprocess.run([project.helm, "template", release, str(chart), "--namespace", namespace, *files],
                                capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr[-3000:]}")
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return Rendered(manifests=manifests, release=release, namespace=namespace, public=public)


# ---- 3. the hub's files where z2jh mounts them ------------------------------------------------

def lay_out(rendered: Rendered, etc: Path) -> dict[str, str]:
    """Write ETC/jupyterhub as the hub Deployment's volumes make it; return the hub Secret's data."""
    name = hub_object_name(rendered)
    config = rendered.find("ConfigMap", name)["data"]
    secret = secret_data(rendered.find("Secret", name))
    hub_etc = etc / "jupyterhub"
    if hub_etc.exists():
        shutil.rmtree(hub_etc)
    (hub_etc / "config").mkdir(parents=True)
    (hub_etc / "secret").mkdir(mode=0o700)
    for key, text in config.items():                    # volume `config` at config/
        (hub_etc / "config" / key).write_text(text)
    for key in ("jupyterhub_config.py", "z2jh.py"):     # and the two subPath mounts
        (hub_etc / key).write_text(config[key])
    for key, text in secret.items():                    # volume `secret` at secret/
        path = hub_etc / "secret" / key
        path.touch(mode=0o600)
        path.write_text(text)
    return secret


def remove_secrets(workdir: Path):
    """The laid-out hub Secret goes when its hub stops (secrets are removed after use)."""
    shutil.rmtree(workdir / "etc" / "jupyterhub" / "secret", ignore_errors=True)


# ---- 4. the running hub ---------------------------------------------------------------------

# Inside a private mount namespace: the hub's files over /usr/local/etc, a hosts file
# that resolves z2jh's Service names, then the program itself.
_LAUNCH = ('mount --bind "$CLASSTOOLS_RT_HOSTS" /etc/hosts && '
           '{ [ -z "$CLASSTOOLS_RT_ETC" ] || mount --bind "$CLASSTOOLS_RT_ETC" ' + ETC + '; } && '
           'unset CLASSTOOLS_RT_HOSTS CLASSTOOLS_RT_ETC && exec "$@"')


def _in_namespace(hosts: Path, etc: Path | None) -> tuple[list[str], dict]:
    # --pid --fork: the program is the namespace's pid 1, so when it exits the kernel ends
    # whatever it left behind (the hub's managed services run in sessions of their own and
    # would outlive it); unshare waits for it and passes the signals it is sent.
    return (["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
             "/bin/sh", "-c", _LAUNCH, "launch"],
            {"CLASSTOOLS_RT_HOSTS": str(hosts), "CLASSTOOLS_RT_ETC": str(etc or "")})


@dataclass
class Hub:
    """The real jupyterhub + configurable-http-proxy for one rendered release."""
    workdir: Path
    venv: Path
    rendered: Rendered = field(repr=False)
    extra_env: dict = field(default_factory=dict, repr=False)
    extra_hosts: dict = field(default_factory=dict)     # name -> address, e.g. the LDAP server's
    hub_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    processes: dict = field(default_factory=dict)
    secret: dict = field(default_factory=dict, repr=False)   # the hub Secret's data: never printed

    @property
    def url(self) -> str:
        """Where a person reaches the hub: the proxy's public port."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def state(self) -> Path:
        """The hub's working directory (/srv/jupyterhub in the pod): its sqlite db lives here."""
        return self.workdir / "srv"

    def _env(self) -> dict:
        keep = ("LANG", "LC_ALL", "TZ")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update({
            "PATH": f"{self.venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.state),
            # what the hub Deployment sets
            "PYTHONUNBUFFERED": "1",
            "HELM_RELEASE_NAME": self.rendered.release,
            "POD_NAMESPACE": self.rendered.namespace,
            "CONFIGPROXY_AUTH_TOKEN": self.secret["hub.config.ConfigurableHTTPProxy.auth_token"],
        })
        # what Kubernetes sets for the Services z2jh's config reads (get_name_env)
        names = self._names()
        for short, port in (("hub", self.hub_port), ("proxy-api", self.proxy_api_port),
                            ("proxy-public", self.proxy_port)):
            prefix = names[short].upper().replace("-", "_")
            env[f"{prefix}_SERVICE_HOST"] = "127.0.0.1"
            env[f"{prefix}_SERVICE_PORT"] = str(port)
        for item in self.rendered.hub_values.get("hub", {}).get("extraEnv") or []:
            if isinstance(item, dict) and "value" in item:
                env[item["name"]] = str(item["value"])
        # KubeSpawner loads a Kubernetes client config as soon as a user's spawner exists
        # (the login redirect makes one); in the pod that is the service account. Here a
        # kubeconfig names an API address where nothing listens: loading it works, and
        # anything that really called the API would fail loudly instead of being faked.
        env["KUBECONFIG"] = str(self._kubeconfig())
        env.update(self.extra_env)
        return env

    def _kubeconfig(self) -> Path:
        path = self.workdir / "kubeconfig"
        if not path.exists():
            path.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "no-api-server",
                "clusters": [{"name": "none", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "hub", "user": {"token": "no-api-server"}}],
                "contexts": [{"name": "no-api-server", "context": {"cluster": "none", "user": "hub",
                                                                   "namespace": self.rendered.namespace}}],
            }))
        return path

    def _names(self) -> dict[str, str]:
        config = self.rendered.find("ConfigMap", hub_object_name(self.rendered))["data"]
        return {short: config[short] for short in SERVICE_NAMES}

    def prepare(self) -> tuple[Path, Path, dict]:
        """Lay out the hub's files and hosts; (etc dir, hosts file, the hub container's env)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.state.mkdir(exist_ok=True)
        etc = self.workdir / "etc"
        self.secret = lay_out(self.rendered, etc)
        hosts = self.workdir / "hosts"
        names = self._names()
        hosts.write_text("127.0.0.1 localhost " + " ".join(sorted(set(names.values()))) + "\n"
                         "::1 localhost ip6-localhost\n"
                         + "".join(f"{address} {name}\n" for name, address in self.extra_hosts.items()))
        return etc, hosts, self._env()

    def hub_command(self, program: str, *args: str) -> tuple[list[str], dict]:
        """(command, env) running `program` of the hub venv as the hub container would: in the
        private namespace with the hub's files, its hosts and its env."""
        etc, hosts, env = self.prepare()
        prefix, namespace_env = _in_namespace(hosts, etc)
        return [*prefix, str(self.venv / "bin" / program), *args], {**env, **namespace_env}

    def start(self):
        etc, hosts, env = self.prepare()
        names = self._names()
        proxy_prefix, proxy_env = _in_namespace(hosts, None)
        hub_target = f"http://{names['hub']}:{self.hub_port}"
        # as z2jh's proxy Deployment runs it (ip/api-ip on loopback instead of the pod's all-interfaces)
        self._spawn("proxy", [*proxy_prefix, CHP, "--ip=127.0.0.1", f"--port={self.proxy_port}",
                              "--api-ip=127.0.0.1", f"--api-port={self.proxy_api_port}",
                              f"--default-target={hub_target}", f"--error-target={hub_target}/hub/error"],
                    {**env, **proxy_env, "NODE_PATH": NODE_PATH})
        command, hub_env = self.hub_command("jupyterhub", "--config", f"{HUB_ETC}/jupyterhub_config.py",
                                            "--upgrade-db",
                                            f"--JupyterHub.hub_bind_url=http://127.0.0.1:{self.hub_port}")
        self._spawn("hub", command, hub_env)
        self.wait_ready()

    def _spawn(self, name: str, command: list[str], env: dict):
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(command, cwd=self.state, env=env, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        log.close()

    def log(self, name: str = "hub", lines: int = 60) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def wait_ready(self):
        """Until the hub answers through the proxy (its routes are set up by then).

        Waits on progress: it gives up when the hub's log has not grown for
        QUIET_LIMIT seconds (a cold start on a loaded machine keeps logging), or
        after START_LIMIT in all."""
        started = last_progress = time.monotonic()
        log, size = self.workdir / "hub.log", -1
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited {process.returncode} while starting:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(f"{self.url}/hub/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            now = time.monotonic()
            grown = log.stat().st_size if log.exists() else 0
            if grown != size:
                size, last_progress = grown, now
            if now - last_progress > QUIET_LIMIT or now - started > START_LIMIT:
                raise AssertionError(f"the hub did not answer on {self.url}/hub/health (its log was silent "
                                     f"for {now - last_progress:.0f}s, {now - started:.0f}s in all):\n{self.log()}")
            time.sleep(0.5)

    def stop(self):
        for name in ("hub", "proxy"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        remove_secrets(self.workdir)

    def redeploy(self, rendered: Rendered):
        """A new release of the same hub: new ConfigMap/Secret, restart, same sqlite db."""
        self.stop()
        self.rendered = rendered
        self.start()

    # ---- talking to it as a person and as an API client ----

    def login(self, username: str, password: str) -> "Session":
        session = Session(self.url, log=self.log)
        session.login(username, password)
        return session

    def api(self, path: str, token: str) -> tuple[int, object]:
        """GET the hub's REST API with a token (e.g. an admin's, from Session.new_token)."""
        request = urllib.request.Request(f"{self.url}/hub/api{path}", headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


class LoginFailed(AssertionError):
    pass


class Session:
    """A browser-like client: cookies, the login form's _xsrf, redirects followed by hand."""

    def __init__(self, base: str, log=None):
        self.base = base
        self.log = log or (lambda: "")
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies),
                                                  _NoRedirect())
        self.user: str | None = None

    def request(self, method: str, path: str, data: dict | None = None, headers: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            response = self.opener.open(request, timeout=60)
        except urllib.error.HTTPError as exc:
            response = exc
        return response.status if hasattr(response, "status") else response.code, \
            dict(response.headers), response.read().decode(errors="replace")

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    def login(self, username: str, password: str):
        status, _, page = self.request("GET", "/hub/login")
        if status != 200:
            raise AssertionError(f"GET /hub/login answered {status}")
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
        if not match:
            raise AssertionError("the hub's login form has no _xsrf field")
        status, headers, page = self.request("POST", "/hub/login?next=",
                                             {"_xsrf": match.group(1), "username": username,
                                              "password": password})
        if status == 302 and self.cookie("jupyterhub-session-id"):
            self.user = username
            return
        error = re.search(r'class="login_error">\s*([^<]*)', page)
        if status == 403 and error:  # the hub's own refusal: the form again, with its message
            raise LoginFailed(f"login of {username} refused: {error.group(1).strip()}")
        # anything else (a 500 from a config the hub cannot load, ...) is not a refusal
        raise AssertionError(f"login of {username}: HTTP {status} from the hub, neither a login nor a "
                             f"refusal; the hub's log:\n{self.log()}")

    def whoami(self) -> dict:
        """GET /hub/api/user with the login cookie (cookie API requests carry the _xsrf token)."""
        xsrf = self.cookie("_xsrf")
        status, _, body = self.request("GET", "/hub/api/user", headers={"X-XSRFToken": xsrf} if xsrf else {})
        if status != 200:
            raise AssertionError(f"/hub/api/user answered {status}: {body[:300]}")
        return json.loads(body)

    def new_token(self, note: str = "runtime test") -> str:
        """An API token of this user, made through the hub's API (as the token page does)."""
        xsrf = self.cookie("_xsrf")
        request = urllib.request.Request(f"{self.base}/hub/api/users/{self.user}/tokens",
                                         data=json.dumps({"note": note, "expires_in": 3600}).encode(),
                                         method="POST",
                                         headers={"X-XSRFToken": xsrf or "", "Content-Type": "application/json"})
        try:
            with self.opener.open(request, timeout=60) as response:
                return json.loads(response.read())["token"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST tokens answered {exc.code}: {exc.read()[:300]!r}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
