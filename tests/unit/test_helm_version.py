"""Which helm Class Tools accepts: the chart's null for z2jh's singleuser.cmd must reach z2jh."""

from __future__ import annotations

import pytest

from tasks import helm


@pytest.mark.parametrize("found", [(3, 17, 1), (3, 21, 0), (4, 0, 4), (4, 1, 4), (4, 2, 5), (5, 0, 0)])
def test_helm_that_honours_the_null_is_accepted(found):
    assert helm.supported(found) == ""


@pytest.mark.parametrize("found", [(3, 8, 1), (3, 17, 0), (2, 17, 0)])
def test_older_helm_is_refused_in_one_line_that_names_both_versions(found):
    problem = helm.supported(found)
    shown = "v" + ".".join(map(str, found))
    assert problem.startswith(f"helm {shown} is too old") and "v3.17.1" in problem
    assert "classroom-start" in problem and "\n" not in problem


@pytest.mark.parametrize("found", [(4, 2, 0), (4, 2, 3), (4, 2, 4)])
def test_the_releases_that_brought_the_fault_back_are_refused(found):
    problem = helm.supported(found)
    assert "helm/helm#32132" in problem and "\n" not in problem
