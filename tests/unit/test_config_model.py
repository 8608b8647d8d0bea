"""The validated config as the stages read it (tasks.config.model): dotted keys and paths. No file is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.config.model import Config

CONFIG = Config(directory=Path("/srv/classroom/config"),
                classroom={"profile": "gke", "images": {"registry": "r.example.edu/x"}},
                courses=[{"name": "intro", "instructors": ["alice", "bob"]}],
                datasets=[{"name": "flights", "source": "gs://bucket/flights"}])


def test_dotted_keys_reach_into_mappings_and_lists():
    assert CONFIG.value("classroom.images.registry") == "r.example.edu/x"
    assert CONFIG.value("courses.0.instructors.1") == "bob"
    assert CONFIG.value("datasets") == [{"name": "flights", "source": "gs://bucket/flights"}]
    assert CONFIG.value("datasets.0.source") == "gs://bucket/flights"
    assert CONFIG.value("classroom") is CONFIG.classroom
    with pytest.raises(KeyError):
        CONFIG.value("students")


def test_the_project_is_the_config_directorys_parent():
    assert CONFIG.project_dir == Path("/srv/classroom")
    assert CONFIG.profile == "gke"


def test_relative_paths_start_at_the_project_and_home_paths_at_home(monkeypatch):
    monkeypatch.setenv("HOME", "/home/staff")
    assert CONFIG.path("config/datasets/x") == Path("/srv/classroom/config/datasets/x")
    assert CONFIG.path("/etc/ssl/ca.pem") == Path("/etc/ssl/ca.pem")
    assert CONFIG.path("~/ca.pem") == Path("/home/staff/ca.pem")
    # an unknown ~user is a relative path here, as the config validation read it (Path.expanduser would raise)
    assert CONFIG.path("~nobody-here/x") == Path("/srv/classroom/~nobody-here/x")
    assert os.path.expanduser("~nobody-here/x") == "~nobody-here/x"
