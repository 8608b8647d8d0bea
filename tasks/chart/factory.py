"""Chart stage: `chart:package` (helm lint, then a reproducible .tgz) → `chart:publish`.

The upstream JupyterHub chart is an input like any other: a local .tgz named
in config, a copy cached by an earlier `helm pull`, or a fresh `helm pull`.
Without it `helm package` cannot work.  In the `gke` profile that is an
error; in the `local` profile (often offline) the chart tasks say so and
step aside, and everything that does not need the chart still runs.  A skip
is remembered: later no-op runs do not knock on the repository again; a new
local copy, a config change or new images make the chart task try again.

`chart:publish` is done only while the bucket's index lists the published
version: its up-to-date check asks the bucket (one small metadata request when
nobody wrote the index since), so an entry lost from the index is published
again by the next run.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from doit.dependency import UptodateCalculator
from doit.tools import result_dep

from tasks.atomic import write_atomically
from tasks.checks import config_inputs, retry_once_present
from tasks.errors import ClassroomError, action
from tasks.filetree.copy import write_tree
from tasks.filetree.ignore import Matcher, context_files

CHART_NAME = "classroom"
CHART_KEYS = ("classroom.chart.jupyterhub_version", "classroom.chart.jupyterhub_chart",
              "classroom.exchange", "courses")
PUBLISH_KEYS = ("classroom.buckets.charts", "classroom.chart.repository_url")


def chart_dir(config) -> Path:
    return config.project_dir / "helm" / CHART_NAME


def output_dir(config) -> Path:
    return config.project_dir / ".classroom" / "charts"


def chart_sources(config) -> list[str]:
    """The chart's files as helm packages them (.helmignore, read like .dockerignore)."""
    root = chart_dir(config)
    if not root.is_dir():
        return []
    matcher = Matcher.for_context(root, ".helmignore")
    return [rel for rel in context_files(root, matcher) if not rel.startswith("charts/")]


def upstream_chart(config) -> Path:
    chart = config.classroom["chart"]
    if chart["jupyterhub_chart"]:
        return config.path(chart["jupyterhub_chart"])
    return output_dir(config) / "upstream" / f"jupyterhub-{chart['jupyterhub_version']}.tgz"


def chart_tasks(config):
    root = chart_dir(config)
    sources = [str(root / rel) for rel in chart_sources(config)]
    upstream = upstream_chart(config)
    if config.classroom["chart"]["jupyterhub_chart"] and upstream.exists():
        sources.append(str(upstream))  # a new local copy of z2jh makes a new chart
    package = {
        "name": "package",
        "doc": "Lint the classroom chart and package it with its content-derived version",
        "actions": [action(package_chart, config)],
        "file_dep": sources,
        "uptodate": [config_inputs(config, *CHART_KEYS),
                     result_dep("image:notebook"), result_dep("image:db"),
                     retry_once_present(upstream)],
        "getargs": {"notebook": ("image:notebook", None), "db": ("image:db", None)},
        "verbosity": 2,
    }
    publish = {
        "name": "publish",
        "doc": "Publish the packaged chart to the charts bucket as a helm repository",
        "actions": [action(publish_chart, config)],
        "uptodate": [config_inputs(config, *PUBLISH_KEYS), result_dep("chart:package"),
                     index_lists_published(config)],
        "getargs": {"package": ("chart:package", None)},
        "verbosity": 2,
    }
    return [package, publish]


class index_lists_published(UptodateCalculator):  # lower case, like doit's own uptodate helpers
    """doit `uptodate` of chart:publish: the bucket's index still lists the version
    this task published, with its digest. Asks only when nothing else already says
    the task must run; a bucket that cannot be asked counts as not listing it (the
    action then says what is wrong)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.found = "not asked"

    def __call__(self, task, values):
        if not values or "version" not in values:
            return None  # skipped or never published: the other checks decide
        if not {"chart", "archive", "digest"} <= set(values):
            self.found = "the last result does not say all the release needs"
            return False  # from before it said all: publish (again)
        package = (self.get_val("chart:package", "_values_:") or {}) if self.get_val else {}
        if package.get("digest") != values["digest"]:
            return None  # another archive to publish: result_dep already runs the task
        from tasks.chart import repo as chart_repo
        repository = chart_repo.open_repository(self.config.classroom["buckets"]["charts"],
                                                self.config.project_dir)
        listed, why = repository.still_lists(CHART_NAME, values["version"], values["digest"],
                                             values.get("index"))
        self.found = f"{'lists' if listed else 'does not list'} {CHART_NAME} {values['version']}"
        if not listed and why:
            print(f"chart:publish: {why}; publishing {CHART_NAME} {values['version']} again", flush=True)
        return listed

    def __repr__(self):
        return f"the charts bucket's index lists the published version: {self.found}"


def _fetch_upstream(config, log) -> tuple[Path | None, str]:
    """The z2jh chart .tgz, or (None, why not)."""
    from tasks import helm
    chart = config.classroom["chart"]
    target = upstream_chart(config)
    if target.exists():
        return target, ""
    if chart["jupyterhub_chart"]:
        return None, (f"chart.jupyterhub_chart names {target}, which does not exist")
    repository, version = chart["jupyterhub_repository"], chart["jupyterhub_version"]
    log(f"chart:package: fetching jupyterhub {version} from {repository}")
    try:
        pulled = helm.pull(repository, "jupyterhub", version, target.parent)
    except helm.HelmError as exc:
        return None, (f"the JupyterHub chart {version} is not available from {repository} ({exc}); "
                      f"download jupyterhub-{version}.tgz where the repository is reachable and set "
                      "chart.jupyterhub_chart in config/classroom.yaml to its path")
    return pulled, ""


def package_chart(config, notebook=None, db=None):
    from tasks import helm  # here, not at load: chartspec needs PyYAML
    from tasks.chart import spec as chartspec

    def log(line):
        print(line, flush=True)

    if not (chart_dir(config) / "Chart.yaml").exists():
        raise ClassroomError(f"no chart at {chart_dir(config)}")
    upstream, why = _fetch_upstream(config, log)
    if upstream is None:
        if config.profile == "local":
            log(f"chart:package: skipped: {why}")
            return {"skipped": why}
        raise ClassroomError(why)
    if not notebook or not db or "ref" not in notebook or "ref" not in db:
        raise ClassroomError("the notebook and db images have not been built")

    version, files = packaged_files(config, {"notebook": notebook, "db": db}, upstream)
    with tempfile.TemporaryDirectory(prefix="classtools-chart-") as tmp:
        unpacked = Path(tmp) / CHART_NAME
        write_tree(unpacked, [], files)
        helm.lint(unpacked)
        helm.package(unpacked, Path(tmp) / "helm-package")  # helm's own checks, e.g. dependencies

    data = chartspec.archive(files, CHART_NAME)
    path = output_dir(config) / f"{CHART_NAME}-{version}.tgz"
    write_atomically(path, data, mode=0o644)
    log(f"chart:package: {path.name} (sha256 {hashlib.sha256(data).hexdigest()[:12]}…)")
    return {"version": version, "path": str(path), "digest": hashlib.sha256(data).hexdigest()}


def packaged_files(config, images: dict, upstream: Path) -> tuple[str, dict[str, bytes]]:
    """(version, files) of the packaged chart: helm/classroom with the packaged values and
    the z2jh archive `upstream` written in (tests render exactly this)."""
    from tasks.chart import spec as chartspec
    root = chart_dir(config)
    sources = {rel: (root / rel).read_bytes() for rel in chart_sources(config)}
    values = chartspec.packaged_values(config, images)
    dependency = upstream.read_bytes()
    dependency_version = config.classroom["chart"]["jupyterhub_version"]
    version = chartspec.chart_version(_base_version(sources), sources, values, dependency_version,
                                      hashlib.sha256(dependency).hexdigest())
    return version, chartspec.chart_files(sources, version, dependency_version, values,
                                          (f"jupyterhub-{dependency_version}.tgz", dependency))


def _base_version(sources) -> str:
    import yaml
    return str(yaml.safe_load(sources["Chart.yaml"]).get("version", "0.1.0"))


def publish_chart(config, package=None):
    from tasks.chart import repo as chart_repo
    from tasks.chart import spec as chartspec

    if not package or package.get("skipped") or "version" not in package:
        why = (package or {}).get("skipped", "no chart was packaged")
        print(f"chart:publish: skipped: {why}", flush=True)
        return {"skipped": why}
    path = Path(package["path"])
    try:
        data = path.read_bytes()
    except OSError:
        raise ClassroomError(f"{path} is gone; run `doit forget chart:package` and again") from None
    if hashlib.sha256(data).hexdigest() != package["digest"]:
        raise ClassroomError(f"{path} changed since it was packaged; refusing to publish it")
    repository = chart_repo.open_repository(config.classroom["buckets"]["charts"], config.project_dir)
    base_url = config.classroom["chart"]["repository_url"] or repository.public_url()
    files = {"Chart.yaml": _chart_yaml_from(data)}
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    archive_url = f"{base_url.rstrip('/')}/{path.name}"
    entry = chartspec.index_entry(files, package["digest"], archive_url, created)
    repository.check_index(entry)  # a corrupt or conflicting index: stop before uploading
    uploaded = repository.upload_chart(path.name, data)
    indexed, conflicts, token = _index_and_confirm(repository, entry)
    state = "published" if uploaded or indexed else "already published"
    raced = f"; index merged after {conflicts} concurrent write(s)" if conflicts else ""
    print(f"chart:publish: {state}: {path.name} in {repository.where} ({base_url}){raced}", flush=True)
    # `index`: the index generation (or file identity) the entry was read back in; the
    # up-to-date check asks whether the index is still that one, or else still lists it.
    # `chart` and `archive`: all the release stage needs to name the chart to helm.
    return {"chart": CHART_NAME, "version": package["version"], "repository": base_url,
            "archive": archive_url, "digest": package["digest"], "index": token}


def _index_and_confirm(repository, entry) -> tuple[bool, int, str]:
    """Merges ENTRY into the index and reads it back: (changed?, conflicts, token of the
    index that lists it). Only a writer that ignores generations can remove the entry
    again at once; then it is merged again, a few rounds at most."""
    from tasks.chart import repo as chart_repo
    indexed_any, conflicts = False, 0
    for _ in range(chart_repo.CONFIRM_ROUNDS):
        indexed, lost_races = repository.add_to_index(entry)
        indexed_any, conflicts = indexed_any or indexed, conflicts + lost_races
        token = repository.confirm(entry)
        if token is not None:
            return indexed_any, conflicts, token
    raise chart_repo.ChartRepoError(
        f"{repository.where}/{chart_repo.INDEX} does not list {entry['name']} {entry['version']} when read "
        f"back, {chart_repo.CONFIRM_ROUNDS} times after writing it: something rewrites the index without "
        "generation preconditions")


def _chart_yaml_from(data: bytes) -> bytes:
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.extractfile(f"{CHART_NAME}/Chart.yaml").read()
