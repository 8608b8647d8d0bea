"""pytest plugin of benchmarks/mutation.py: a test's `project.doit(...)` (doit in a subprocess) is skipped.

The subprocess imports the mutated module, whose mutmut trampoline then looks for
setup.cfg in the subprocess's cwd (the test's project copy) and dies with a
traceback: every mutant would count as "killed" by an unrelated failure, and the
clean run fails first.  A subprocess cannot see the mutant under test anyway.
"""
import pytest


@pytest.fixture(autouse=True)
def _no_doit_subprocess(request, monkeypatch):
    if "project" in request.fixturenames:
        project = request.getfixturevalue("project")

        def skipped(self, *args, **kwargs):
            pytest.skip("doit in a subprocess cannot see mutmut's mutants")
        monkeypatch.setattr(type(project), "doit", skipped)



# Tests that start doit in a subprocess themselves (not through `project.doit`): same reason.
SUBPROCESS_TESTS = ("tests/unit/test_semantic_inputs.py::test_doit_reruns_only_on_semantic_change",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SUBPROCESS_TESTS:
            item.add_marker(pytest.mark.skip(reason="doit in a subprocess cannot see mutmut's mutants"))
