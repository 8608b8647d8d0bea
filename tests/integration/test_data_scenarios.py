"""Dataset edits through the whole chain, as a course's staff makes them: the real `doit` on a
project built for real (stand-in images in the engine and registry, the real z2jh chart
published to the GCS emulator, the data bucket a directory as in the local profile).

Adding a dataset uploads it and rebuilds the image that bakes the datasets, and touches no
chart or release; naming the courses a dataset belongs to uploads nothing."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.test_chart import _classroom, _ran

pytestmark = pytest.mark.integration

CHAIN_DOWNSTREAM = ("chart:", "release:", "cluster:")


@pytest.fixture
def built(project, registry, bucket, jupyterhub_chart):
    _classroom(project, registry, bucket, jupyterhub_chart, f"d{uuid.uuid4().hex[:8]}")
    first = project.doit(check=True)
    assert {"data:upload:sample-flights", "data:prune", "image:local", "chart:publish"} <= _ran(first)
    assert _ran(project.doit(check=True)) <= {"secrets"}
    return project


def _data_bucket(project):
    return project.root / ".classroom" / "buckets" / "data"  # buckets.data's default, file://


def test_adding_a_dataset_uploads_it_and_rebuilds_only_the_local_image(built):
    weather = built.root / "weather"
    weather.mkdir()
    (weather / "temps.csv").write_text("day,temp\n1,20\n")
    data = built.config / "data.yaml"
    data.write_text(data.read_text() + "  - name: weather\n    source: weather\n")

    ran = _ran(built.doit(check=True))
    assert {"data:upload:weather", "image:local"} <= ran
    assert ran <= {"data:upload:weather", "data:prune", "image:local", "secrets"}, ran
    assert not [task for task in ran if task.startswith(CHAIN_DOWNSTREAM)]
    assert (_data_bucket(built) / "weather" / "temps.csv").read_text() == "day,temp\n1,20\n"
    assert _ran(built.doit(check=True)) <= {"secrets"}


def test_a_dataset_file_edit_uploads_it_and_nothing_downstream(built):
    csv = next((built.config / "datasets" / "sample-flights").rglob("*.csv"))
    csv.write_text(csv.read_text() + "\n")
    ran = _ran(built.doit(check=True))
    assert "data:upload:sample-flights" in ran
    assert ran <= {"data:upload:sample-flights", "image:local", "secrets"}, ran


def test_naming_a_datasets_courses_uploads_nothing(built):
    data = built.config / "data.yaml"
    text = data.read_text()
    assert "  - name: sample-flights\n" in text
    data.write_text(text + "    courses: [data-science-101]\n")
    result = built.doit(check=True)
    ran = _ran(result)
    assert not [task for task in ran if task.startswith("data:")], ran
    assert "-- data:upload:sample-flights" in result.stdout
