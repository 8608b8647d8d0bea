"""Class Tools: the classroom's build graph.

    config/ ─validate─▶ secrets
    data.yaml's datasets ──▶ data:upload:<name>, data:prune ──▶ buckets.data (read by the cluster's mounts)
    images/base ──▶ image:base ──▶ image:notebook, image:local (bakes the datasets too)
    images/db   ──▶ image:db
    helm/classroom + image tags ──▶ chart:package ──▶ chart:publish (a bucket helm repo)
    cluster:ip, cluster:hub-node, chart:publish ──▶ release:jupyterhub

Config is validated when this file loads, so every doit command (`doit`,
`doit list`, `doit info`, ...) refuses bad input before any task runs.
Heavy libraries (docker, google.cloud) are imported inside actions only:
a no-op `doit` costs little more than doit's own start-up.

Once the config is valid, and only then, the run may touch the disk: doit's
state is saved atomically (tasks/run/statefile.py), and a command that can change
something waits for any other `doit` of this project and cleans up after a
killed one (tasks/run/runlock.py); `list`, `info` and `help` never wait.
"""

from tasks import secretstore
from tasks.chart import factory as chart
from tasks.cluster import diagnosis
from tasks.cluster import factory as cluster
from tasks.config import loader as classroom
from tasks.data import factory as data
from tasks.images import factory as images
from tasks.local import factory as local
from tasks.release import factory as release
from tasks.release import render
from tasks.run import runlock, statefile
from tasks.run.reporter import ClassroomReporter

CONFIG = classroom.load_or_exit()
# Deploying is part of the default run in profile gke (or with cluster.deploy: always).  The data
# upload is part of every profile's: in `local` the bucket is a directory, filled the same way.
DEFAULT_TASKS = ["secrets", "data", "image", "chart"] + (["cluster", "release"] if cluster.deploying(CONFIG) else [])
# The reporter adds one line per task: what it did, or why it had nothing to do.
DOIT_CONFIG = {**classroom.doit_settings(CONFIG), "default_tasks": DEFAULT_TASKS, "reporter": ClassroomReporter}
runlock.install_crash_hook()  # the crash test's kill points; nothing unless CLASSTOOLS_CRASH_AT is set
statefile.install()
# Where a killed run may have left half-written files: the chart archives, the secrets, the data manifest.
runlock.start_run(DOIT_CONFIG["dep_file"], temp_dirs=[chart.output_dir(CONFIG), secretstore.SecretStore().path.parent,
                                                      *data.temp_dirs(CONFIG)])


def task_secrets():
    """Generate missing tokens and passwords into a 0600 file; values never printed."""
    return secretstore.task_dict(CONFIG)


def task_data():
    """Copy the datasets of data.yaml into the data bucket, changed objects only; prune removed ones."""
    yield from data.data_tasks(CONFIG)


def task_image():
    """Build the images by content tag; push to the registry when one is configured."""
    yield from images.image_tasks(CONFIG)


def task_chart():
    """Package the classroom chart by content version and publish it to the charts bucket."""
    yield from chart.chart_tasks(CONFIG)


def task_cluster():
    """Prepare the cluster: the hub's node label (and, on GKE, the static IP)."""
    yield from cluster.cluster_tasks(CONFIG)


def task_release():
    """Deploy the releases: the hub from the published classroom chart."""
    yield from release.release_tasks(CONFIG)


def task_local():
    """Start the local image and its database on this machine; print the URL with its token."""
    return local.task_dict(CONFIG)


def task_render():
    """Write what `helm upgrade` would apply, one file per release, secrets masked: `doit render --out DIR`."""
    return render.task_dict(CONFIG)


def task_diagnose():
    """Read-only checklist for "a student sees a 500 error": `doit diagnose --user NAME`."""
    return diagnosis.task_dict(CONFIG)
