"""Pure parts of the release and cluster stages: what "the cluster runs these values" compares,
how drift is named, helm's words and the objects the drift check gives the API server."""

from __future__ import annotations

import pytest

from tasks import helm, kube
from tasks.cluster.factory import deploying
from tasks.release import factory as release


def test_desired_values_merge_as_helm_merges_values_files():
    public = {"jupyterhub": {"hub": {"config": {"Authenticator": {"admin_users": ["dean"]}}},
                             "singleuser": {"cpu": {"limit": 2, "guarantee": 0.25}}},
              "classroom": {"tls": {"mode": "none"}}}
    secret = {"jupyterhub": {"hub": {"cookieSecret": "c0ffee"}}, "classroom": {"db": {"rootPassword": "pw"}}}
    merged = release.desired_values(public, secret)
    assert merged["jupyterhub"]["hub"] == {"config": {"Authenticator": {"admin_users": ["dean"]}},
                                           "cookieSecret": "c0ffee"}
    assert merged["classroom"] == {"tls": {"mode": "none"}, "db": {"rootPassword": "pw"}}
    assert merged["jupyterhub"]["singleuser"]["cpu"] == {"limit": 2, "guarantee": 0.25}
    assert public["jupyterhub"]["hub"] == {"config": {"Authenticator": {"admin_users": ["dean"]}}}, \
        "the documents given to helm are not changed"
    # a later file replaces a list, it does not extend it
    assert release.desired_values({"a": {"l": [1, 2]}}, {"a": {"l": [3]}}) == {"a": {"l": [3]}}


def test_differing_keys_name_paths_never_values():
    deployed = {"jupyterhub": {"cull": {"enabled": False, "timeout": 3600}, "hub": {"cookieSecret": "old"}}}
    desired = {"jupyterhub": {"cull": {"enabled": True, "timeout": 3600}, "hub": {"cookieSecret": "new"},
                              "proxy": {"secretToken": "t"}}}
    changed = release.differing_keys(deployed, desired)
    assert changed == ["jupyterhub.cull.enabled", "jupyterhub.hub.cookieSecret", "jupyterhub.proxy"]
    assert not any(secret in " ".join(changed) for secret in ("old", "new", '"t"'))
    assert release.differing_keys(desired, desired) == []
    # a list is a value: any change in it is a change of the key
    assert release.differing_keys({"a": [1, 2]}, {"a": [2, 1]}) == ["a"]


def test_kubectl_diff_output_is_reduced_to_object_names():
    output = ("diff -u -N /tmp/LIVE-1/apps.v1.Deployment.rel-1.hub /tmp/MERGED-2/apps.v1.Deployment.rel-1.hub\n"
              "--- /tmp/LIVE-1/apps.v1.Deployment.rel-1.hub\n-        image: registry.invalid/hub:evil\n"
              "diff -u -N /tmp/LIVE-1/v1.Secret.rel-1.hub /tmp/MERGED-2/v1.Secret.rel-1.hub\n"
              "-  values.yaml: '***' (before)\n")
    assert kube.changed_objects(output) == ["Deployment/hub", "Secret/hub"]
    assert kube.changed_objects("") == []


def test_the_drift_check_compares_objects_as_helm_owns_them():
    objects = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hub"}},
               {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "hub", "annotations": {"prometheus.io/scrape": "true"}}},
               {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "classroom-nightly-1"}}]
    owned = helm.ownership(objects, "classroom", "rel-1")
    assert [o["kind"] for o in owned] == ["Deployment", "Service"], "a finished Job that its TTL removed is no drift"
    for obj in owned:
        assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == "classroom"
        assert obj["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == "rel-1"
    assert owned[1]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "annotations" not in objects[0]["metadata"], "helm's manifest is not changed"


@pytest.mark.parametrize("version,words,absent", [
    (4, {"--rollback-on-failure", "--wait=watcher", "--force-conflicts", "--timeout=90s"}, "--atomic"),
    (3, {"--atomic", "--wait", "--timeout=90s"}, "--force-conflicts"),
])
def test_helm_upgrade_words_by_major_version(monkeypatch, version, words, absent):
    monkeypatch.setattr(helm, "major", lambda: version)
    flags = helm.upgrade_flags(90)
    assert set(flags) == words and absent not in flags


def test_deploying_by_profile_and_setting():
    config = type("C", (), {})()
    for profile, deploy, expected in [("gke", "auto", True), ("local", "auto", False),
                                      ("local", "always", True), ("gke", "never", False)]:
        config.profile, config.classroom = profile, {"cluster": {"deploy": deploy}}
        assert deploying(config) is expected, (profile, deploy)
