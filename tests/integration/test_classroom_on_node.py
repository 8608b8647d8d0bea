"""The classroom as one system on the dev cluster's real node, as a student and an instructor use it.

`doit` builds the real images, publishes the chart and deploys the release
(profile local, `cluster.deploy: always`, the dev registry) with every pod in
the real node's pool (`cluster.node_pool`) and z2jh's own images from the dev
registry's mirror of them (`cluster.image_mirror`: the hub image built from
z2jh's recipe and frozen requirements, configurable-http-proxy, the
user-scheduler's kube-scheduler, pause). The hub's health is probed through the
API server (`cluster.health_probe`), as on a real cluster.

Then a real browser (Debian's Chromium) opens the proxy's Service, logs in as
an LDAP user (Debian's slapd on the pod network's gateway, so pods reach it;
StartTLS, its certificate checked against the directory's own CA, which
`auth.ldap.ca_bundle` mounts into the hub) and gets
JupyterLab from the student's pod that KubeSpawner started on the node: the
notebook image with its db sidecar (a `%sql` query answers), its home claim,
the course repository pulled by classroom-start (served by git daemon on the
gateway). Stopping the server removes the pod and keeps the home; starting
again finds the work. A student of the other course gets 403 from the first
course's grader, whose instructor gets its formgrader.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import use_jupyterhub_chart
from tests.integration.runtime import browser
from tests.integration.runtime.hub import Session
from tests.integration.runtime.ldap import PEOPLE, start_ldap
from tests.integration.test_release import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COURSE_A, COURSE_B = "course-a", "course-b"
STUDENT_A, STUDENT_B, INSTRUCTOR_A = "ann", "bob", "prof"
SERVER_START = 900  # a cold pull of the notebook image onto the node, on a loaded machine


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=Prof", "-c", "user.email=prof@example.edu", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def node(dev_services) -> dict:
    if not dev_services.get("real_node"):
        pytest.fail("the dev environment runs no real node (CLASSTOOLS_REAL_NODE=0?)", pytrace=False)
    if not dev_services.get("upstream_images"):
        pytest.fail("the dev registry holds no mirror of z2jh's images (is ../shared/upstream there?)",
                    pytrace=False)
    return dev_services["real_node"]


@pytest.fixture(scope="module")
def gateway(node) -> str:
    """The pod network's gateway: an address of this machine that pods reach."""
    return node["gateway"]


@pytest.fixture(scope="module")
def course_server(tmp_path_factory, gateway):
    """Course A's repository, served by `git daemon` (git's own protocol, shallow clones
    included, which nbgitpuller makes) on the gateway."""
    import socket
    root = tmp_path_factory.mktemp("git")
    work = root / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "lab1.md").write_text("# Lab 1\nLoad the flights table.\n")
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "lab 1", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(root / "served" / "intro.git"), cwd=root)
    with socket.socket() as sock:
        sock.bind((gateway, 0))
        port = sock.getsockname()[1]
    daemon = subprocess.Popen(["git", "daemon", f"--base-path={root / 'served'}", "--export-all", "--reuseaddr",
                               f"--listen={gateway}", f"--port={port}", str(root / "served")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"git://{gateway}:{port}/intro.git"
    _wait("git daemon answering", lambda: subprocess.run(["git", "ls-remote", url], capture_output=True,
                                                         timeout=10).returncode == 0, 30)
    yield url
    daemon.terminate()
    daemon.wait(timeout=10)


@pytest.fixture(scope="module")
def directory(tmp_path_factory, gateway):
    ldap = start_ldap(tmp_path_factory.mktemp("ldap"), {"class": [STUDENT_A, STUDENT_B, INSTRUCTOR_A]},
                      address=gateway)
    yield ldap
    ldap.stop()


@pytest.fixture(scope="module")
def classroom(tmp_path_factory, node, dev_services, registry, jupyterhub_chart, kubeconfig, kubectl_bin, helm_bin,
              course_server, directory):
    from tests.conftest import Project
    project = Project(tmp_path_factory.mktemp("e2e") / "classroom")
    shutil.copytree(REPO / "config", project.config)
    shutil.copytree(REPO / "images", project.root / "images")
    shutil.copytree(REPO / "helm", project.root / "helm")
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(kubeconfig, kubectl_bin, helm_bin, namespace)
    mirror = dev_services["upstream_images"]["mirror"]
    text = (project.config / "classroom.yaml").read_text()
    for old, new in [
            ('registry: ""', f'registry: "{registry}/real"'),
            ("deploy: auto", "deploy: always"), ('kube_context: ""', "kube_context: classtools-dev"),
            ("namespace: classroom", f"namespace: {namespace}"),
            ("  name: classroom ", f"  name: {cluster.release} "),
            ("node_label: hub-node=true", f"node_label: {node['label']}"),
            ('    label: ""', f"    label: {node['label']}"), ('    taint: ""', f"    taint: {node['taint']}"),
            ('image_mirror: ""', f"image_mirror: {mirror}"), ("pre_pull_hook: true", "pre_pull_hook: false"),
            ("storage_class: standard-rwx", f"storage_class: {dev_services['control_plane']['storage_class']}"),
            ("type: dummy ", "type: ldap "), ('server: ""', f"server: {node['gateway']}"),
            ("bind_dn_templates: []", f'bind_dn_templates: ["uid={{username}},{PEOPLE}"]'),
            ("tls_strategy: on_connect", "tls_strategy: before_bind"),  # StartTLS on 389
            ('ca_bundle: ""          # PEM', f'ca_bundle: "{directory.ca_file}"  # PEM'),
            ("cpu_guarantee: 0.25", "cpu_guarantee: 0.05"), ("memory_guarantee: 512M", "memory_guarantee: 256M"),
            ("helm_timeout: 600", "helm_timeout: 1200")]:
        assert old in text, f"config/classroom.yaml no longer has {old!r}"
        text = text.replace(old, new, 1)
    project.write("classroom.yaml", use_jupyterhub_chart(text, jupyterhub_chart))
    project.write("courses.yaml", f"""courses:
  - name: {COURSE_A}
    repo: {course_server}
    ref: main
    instructors: [{INSTRUCTOR_A}]
    students: [{STUDENT_A}]
  - name: {COURSE_B}
    repo: {course_server}
    instructors: [{INSTRUCTOR_A}]
    students: [{STUDENT_B}]
""")
    env = project.env(KUBECONFIG=kubeconfig)
    started = time.monotonic()
    result = project.doit("--verbosity", "2", env=env, check=True)
    project.deploy_seconds = time.monotonic() - started
    project.output = result.stdout + result.stderr
    project.cluster, project.directory, project.node, project.mirror = cluster, directory, node, mirror
    address = cluster.kubectl("-n", namespace, "get", "service", "proxy-public", "-o",
                              "jsonpath={.spec.clusterIP}").stdout.strip()
    project.url = f"http://{address}"
    yield project
    cluster.helm("uninstall", cluster.release, "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def _pods(cluster) -> dict:
    return {p["metadata"]["name"]: p for p in cluster.get("pods")["items"]}


def _wait(what: str, check, timeout: float = 300, every: float = 1, why=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what} {why()}".rstrip())
        time.sleep(every)


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def test_the_classroom_runs_on_the_node_from_the_mirror_and_the_deploy_probed_the_hubs_health(classroom):
    pods = _pods(classroom.cluster)
    running = {name: pod for name, pod in pods.items()
               if name.startswith(("hub-", "proxy-", "user-scheduler-", f"grader-{COURSE_A}-", f"grader-{COURSE_B}-"))}
    assert {name.rsplit("-", 2)[0] for name in running} == {
        "hub", "proxy", "user-scheduler", f"grader-{COURSE_A}", f"grader-{COURSE_B}"}, sorted(pods)
    for name, pod in running.items():
        assert _ready(pod), (name, pod["status"])
        assert pod["spec"]["nodeName"] == classroom.node["name"], name
    core = [c["image"] for name, pod in running.items() if not name.startswith("grader-")
            for c in pod["spec"]["containers"]]
    assert core and all(image.startswith(classroom.mirror + "/") for image in core), core
    # release:jupyterhub asked /hub/health through the API server's service proxy
    assert "; hub healthy" in classroom.output, classroom.output[-3000:]


@contextlib.contextmanager
def _browser(profile: Path):
    with browser.playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(profile), executable_path=browser.CHROMIUM, args=browser.FLAGS, headless=True,
            viewport={"width": 1400, "height": 900})
        context.set_default_timeout(SERVER_START * 1000)
        try:
            yield context
        finally:
            context.close()


def _log_in(context, classroom, user: str):
    """The hub's login form, as a person fills it in; the page after it."""
    page = context.new_page()
    page.goto(f"{classroom.url}/hub/login", wait_until="domcontentloaded")
    page.fill("#username_input", user)
    page.fill("#password_input", classroom.directory.password(user))
    page.click("#login_submit")
    _wait(f"{user}'s login to leave the login page", lambda: "/hub/login" not in page.url, 60,
          why=lambda: page.inner_text("body")[:300])
    return page


def _run_until(page, cell, expected: str, tmp_path: Path, attempts: int = 4):
    """Run CELL (Shift+Enter) until its output shows EXPECTED: a cold kernel on a loaded node
    may take a while, and a first error is shown in full if every attempt fails."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    outputs = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-OutputArea-output")
    # A cell run before the new kernel is connected is dropped, not queued: wait for the kernel
    # to say Idle in the status bar, as a person waits for the kernel indicator.
    try:
        page.get_by_text(re.compile(r"ipykernel\) \| Idle")).first.wait_for(timeout=300_000)
    except PlaywrightTimeout:
        print("the kernel never said Idle in the status bar; running the cell anyway")
    for attempt in range(attempts):
        cell.click()
        page.keyboard.press("Shift+Enter")
        try:
            outputs.filter(has_text=expected).first.wait_for(timeout=120_000)
            return
        except PlaywrightTimeout:
            shown = " | ".join(outputs.all_inner_texts())[-1500:]
            browser.screenshot(page, tmp_path, f"e2e-student-sql-attempt-{attempt + 1}")
            print(f"attempt {attempt + 1}: no {expected!r} in the cell's output: {shown or '(none yet)'}")
    raise AssertionError(f"the cell never printed {expected!r} in {attempts} attempts; its output: {shown}")


def test_a_student_logs_in_in_a_browser_and_works_in_jupyterlab(classroom, tmp_path):
    cluster = classroom.cluster
    with _browser(tmp_path / "profile") as context:
        page = _log_in(context, classroom, STUDENT_A)
        page.wait_for_url(f"**/user/{STUDENT_A}/lab**")
        page.locator(".jp-DirListing-content").wait_for()
        page.locator(".jp-DirListing-item", has_text=COURSE_A).first.wait_for(timeout=120_000)
        browser.screenshot(page, tmp_path, "e2e-student-lab")
        # A notebook in the student's server: %sql against the pod's own database. JupyterLab
        # answers as soon as the notebook container does; the db sidecar may still be starting
        # (its readiness probe, mariadb-admin ping, is what makes the pod Ready).
        _wait("the student's pod Ready, its db sidecar included",
              lambda: _ready(_pods(cluster).get(f"jupyter-{STUDENT_A}", {})), SERVER_START)
        page.locator(".jp-LauncherCard", has_text="Python 3").first.click()
        cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        cell.wait_for()
        cell.click()
        page.keyboard.type("%load_ext sql\n%sql SELECT 40 + 2 AS answer")
        _run_until(page, cell, "42", tmp_path)
        browser.screenshot(page, tmp_path, "e2e-student-sql")
    pod = _pods(cluster)[f"jupyter-{STUDENT_A}"]
    assert pod["spec"]["nodeName"] == classroom.node["name"]
    assert {"notebook", "db"} <= {c["name"] for c in pod["spec"]["containers"]}
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    home = cluster.kubectl("-n", cluster.namespace, "exec", f"jupyter-{STUDENT_A}", "-c", "notebook", "--",
                           "cat", f"/home/jovyan/{COURSE_A}/lab1.md").stdout
    assert "Load the flights table." in home
    claim = cluster.get("pvc", f"claim-{STUDENT_A}")
    assert claim["status"]["phase"] == "Bound"


def _api(classroom, username: str) -> tuple[Session, str]:
    session = Session(classroom.url)
    session.login(username, classroom.directory.password(username))
    return session, session.new_token()


def test_stopping_keeps_the_home_and_the_next_start_finds_the_work(classroom):
    cluster = classroom.cluster
    session, token = _api(classroom, STUDENT_A)
    pod = f"jupyter-{STUDENT_A}"
    status, _ = _call(classroom, "POST", f"/users/{STUDENT_A}/server", token)
    assert status in (201, 202, 400), status  # 400: already running
    _wait("the student's server running", lambda: _ready(_pods(cluster).get(pod, {})), SERVER_START)
    cluster.kubectl("-n", cluster.namespace, "exec", pod, "-c", "notebook", "--", "sh", "-c",
                    "echo my answer > /home/jovyan/work.txt")
    status, _ = _call(classroom, "DELETE", f"/users/{STUDENT_A}/server", token)
    assert status in (202, 204), status
    _wait("the student's pod gone", lambda: pod not in _pods(cluster), 300)
    assert cluster.get("pvc", f"claim-{STUDENT_A}")["status"]["phase"] == "Bound"
    status, _ = _call(classroom, "POST", f"/users/{STUDENT_A}/server", token)
    assert status in (201, 202), status
    _wait("the student's server running again", lambda: _ready(_pods(cluster).get(pod, {})), SERVER_START)
    again = cluster.kubectl("-n", cluster.namespace, "exec", pod, "-c", "notebook", "--",
                            "cat", "/home/jovyan/work.txt").stdout
    assert again == "my answer\n"


def _call(classroom, method: str, path: str, token: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request
    request = urllib.request.Request(f"{classroom.url}/hub/api{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_only_the_courses_people_open_its_grader(classroom, tmp_path):
    """Through the proxy, in a browser: the grader's OAuth with the hub lets in the course's
    instructor (formgrader) and turns away a student of the other course (403)."""
    with _browser(tmp_path / "outsider") as context:
        page = _log_in(context, classroom, STUDENT_B)
        response = page.goto(f"{classroom.url}/services/{COURSE_A}/", wait_until="domcontentloaded")
        assert response.status == 403, (response.status, page.url)
    with _browser(tmp_path / "instructor") as context:
        page = _log_in(context, classroom, INSTRUCTOR_A)
        response = page.goto(f"{classroom.url}/services/{COURSE_A}/formgrader", wait_until="domcontentloaded")
        assert response.status == 200, (response.status, page.url)
        assert f"/services/{COURSE_A}/formgrader" in page.url
        page.get_by_text("Manage Assignments").first.wait_for(timeout=120_000)
        browser.screenshot(page, tmp_path, "e2e-instructor-formgrader")


def test_the_deploy_time_is_reported(classroom, record_property):
    record_property("deploy_seconds", round(classroom.deploy_seconds))
    print(json.dumps({"e2e_deploy_seconds": round(classroom.deploy_seconds)}))


class PodServer:
    """A running server or grader pod, driven as runtime/nbgrader.py drives a server: commands
    run in its container (`kubectl exec`) with the environment KubeSpawner or the chart gave it."""

    def __init__(self, cluster, pod: str, container: str):
        self.cluster, self.pod, self.container = cluster, pod, container

    def exec(self, command: list[str], env: dict | None = None, workdir: str | None = None) -> tuple[int, str]:
        extra = ["env", *[f"{k}={v}" for k, v in (env or {}).items()]] if env else []
        result = self.cluster.kubectl("-n", self.cluster.namespace, "exec", self.pod, "-c", self.container, "--",
                                      *extra, "sh", "-c", 'cd "$0" && exec "$@"', workdir or "/home/jovyan",
                                      *command, check=False)
        return result.returncode, result.stdout + result.stderr

    def server_env(self) -> dict:
        return {"HOME": "/home/jovyan"}


def _running_server(classroom, user: str) -> PodServer:
    _, token = _api(classroom, user)
    status, _ = _call(classroom, "POST", f"/users/{user}/server", token)
    assert status in (201, 202, 400), status
    pod = f"jupyter-{user}"
    _wait(f"{user}'s server running", lambda: _ready(_pods(classroom.cluster).get(pod, {})), SERVER_START)
    return PodServer(classroom.cluster, pod, "notebook")


def test_nbgrader_round_trip_across_pods_and_courses_kept_apart(classroom):
    """The instructor's grader releases, the student's server fetches and submits through the shared
    exchange claim, the grader collects and autogrades; a student of the other course sees nothing."""
    from tests.integration.runtime import nbgrader as nbg
    grader_pod = next(name for name in _pods(classroom.cluster) if name.startswith(f"grader-{COURSE_A}-"))
    grader = PodServer(classroom.cluster, grader_pod, "grader")
    course_dir = nbg.course_directory(grader)
    nbg.create_assignment(grader, course_dir)
    nbg.must(grader.exec(["nbgrader", "release_assignment", nbg.ASSIGNMENT], workdir=course_dir),
             "nbgrader release_assignment")

    student = _running_server(classroom, STUDENT_A)
    assert f"{COURSE_A} {nbg.ASSIGNMENT}" in nbg.listed(student)
    nbg.must(student.exec(["nbgrader", "fetch_assignment", nbg.ASSIGNMENT, "--course", COURSE_A]), "fetch")
    nbg.answer(student, COURSE_A)
    nbg.must(student.exec(["nbgrader", "submit", nbg.ASSIGNMENT, "--course", COURSE_A]), "submit")
    nbg.must(grader.exec(["nbgrader", "collect", nbg.ASSIGNMENT], workdir=course_dir), "nbgrader collect")
    nbg.must(grader.exec(["nbgrader", "autograde", nbg.ASSIGNMENT], workdir=course_dir), "nbgrader autograde")
    assert nbg.score(grader, course_dir, COURSE_A, STUDENT_A) == {"score": nbg.POINTS, "max_score": nbg.POINTS}

    outsider = _running_server(classroom, STUDENT_B)
    assert COURSE_A not in nbg.listed(outsider)
    code, out = outsider.exec(["nbgrader", "fetch_assignment", nbg.ASSIGNMENT, "--course", COURSE_A])
    assert code != 0 and "You do not have access to this course" in out, out


class _Poller:
    """GETs a URL every `every` seconds in a thread; records when it did not answer 200."""

    def __init__(self, url: str, headers: dict | None = None, every: float = 0.25):
        import threading
        self.url, self.headers, self.every = url, headers or {}, every
        self.samples: list[tuple[float, bool]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import urllib.error
        import urllib.request
        while not self.done.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, headers=self.headers),
                                            timeout=5) as response:
                    ok = response.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            self.samples.append((started, ok))
            self.done.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(timeout=10)

    def unavailable_seconds(self) -> float:
        """The time between the first failed sample of each outage and the next good one."""
        down, since = 0.0, None
        for at, ok in self.samples:
            if not ok and since is None:
                since = at
            elif ok and since is not None:
                down, since = down + at - since, None
        if since is not None:
            down += self.samples[-1][0] - since
        return down

    def failures(self) -> int:
        return sum(1 for _, ok in self.samples if not ok)


def test_an_upgrade_while_a_student_works_keeps_the_server_and_says_how_long_the_hub_was_away(
        classroom, record_property):
    """An edit that redeploys the hub (one more admin): the student's running server keeps
    answering through the proxy, which keeps its route, and the hub comes back; the time the
    hub did not answer is measured."""
    student = _running_server(classroom, STUDENT_A)
    _, token = _api(classroom, STUDENT_A)
    server_url = f"{classroom.url}/user/{STUDENT_A}/api/status"
    headers = {"Authorization": f"token {token}"}
    # also fills the server's cache of the token's check with the hub, as a working student's has
    _wait("the student's server answering through the proxy", lambda: _status(server_url, headers) == 200, 120)
    text = (classroom.config / "classroom.yaml").read_text()
    assert "admin_users: []" in text
    classroom.write("classroom.yaml", text.replace("admin_users: []", "admin_users: [dean]", 1))
    with _Poller(f"{classroom.url}/hub/health") as hub, _Poller(server_url, headers) as server:
        result = classroom.doit(env=classroom.env(KUBECONFIG=classroom.cluster.kubeconfig), check=True)
        _wait("the hub answering again", lambda: _status(f"{classroom.url}/hub/health", {}) == 200, 300)
        time.sleep(2)
    assert "release:jupyterhub" in result.stdout
    hub_down = round(hub.unavailable_seconds(), 1)
    record_property("hub_unavailable_seconds", hub_down)
    print(json.dumps({"hub_unavailable_seconds": hub_down, "server_failed_samples": server.failures(),
                      "server_samples": len(server.samples)}))
    assert hub.failures() > 0, "the hub was never seen away: was it redeployed?"
    assert server.failures() == 0, f"the student's server failed {server.failures()} of {len(server.samples)} times"
    # the new hub knows the admin, and the student's server is still the same pod
    assert _pods(classroom.cluster)[student.pod]["status"]["phase"] == "Running"
    values = json.loads(classroom.cluster.helm("get", "values", classroom.cluster.release, "-o", "json").stdout)
    assert values["jupyterhub"]["hub"]["loadRoles"]["admin"]["users"] == ["dean"]


def _status(url: str, headers: dict) -> int:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0
