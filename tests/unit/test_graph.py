"""The pure part of `doit graph`: states for the next run, reasons in a few words, the DOT."""

from __future__ import annotations

from types import SimpleNamespace

from tasks.checks import value_inputs
from tasks.filetree.state import context_unchanged
from tasks.run import graph

W, M, U, X = graph.WILL_RUN, graph.MAY_RUN, graph.UP_TO_DATE, graph.UNKNOWN


def test_a_task_downstream_of_work_may_run_and_one_beside_it_stays_up_to_date():
    own = {"image:base": W, "image:notebook": U, "chart:package": U, "image:db": U, "chart:publish": U}
    upstream = {"image:notebook": ["image:base"], "chart:package": ["image:notebook", "image:db"],
                "chart:publish": ["chart:package"]}
    assert graph.states(own, upstream) == {"image:base": W, "image:notebook": M, "chart:package": M,
                                           "image:db": U, "chart:publish": M}


def test_own_failure_wins_over_upstream_and_unknown_upstream_does_not_spread():
    own = {"a": X, "b": U, "c": W}
    upstream = {"b": ["a"], "c": ["b"]}
    assert graph.states(own, upstream) == {"a": X, "b": U, "c": W}


def test_a_cycle_does_not_loop():
    assert graph.states({"a": U, "b": U}, {"a": ["b"], "b": ["a"]}) == {"a": U, "b": U}


def test_sources_are_summarised_per_directory_of_the_project():
    assert graph.source_label("/p/images/base/Dockerfile", "/p") == "images/base/"
    assert graph.source_label("/p/images/base/material/x/y.txt", "/p") == "images/base/"
    assert graph.source_label("/p/dodo.py", "/p") == "dodo.py"
    assert graph.source_label("/elsewhere/ca.pem", "/p") == "/elsewhere/"
    assert graph.source_label("/p/images/shared", "/p", directory=True) == "images/shared/"
    assert graph.source_label("/data/set", "/p", directory=True) == "/data/set/"


def test_reasons_name_the_config_keys_and_the_files():
    class Named:
        def __repr__(self):
            return "config changed: courses"
    reasons = {"uptodate_false": [(Named(), [], {})], "changed_file_dep": ["/p/images/base/a", "/p/images/base/b"]}
    assert graph.reason(reasons, "/p") == "config changed: courses; changed: images/base/a and 1 more"
    assert graph.reason({"uptodate_false": [(lambda: False, [], {})]}, "/p") == "its check failed"
    assert graph.reason({"has_no_dependencies": True}, "/p") == "runs every time"


def _task(name, task_dep=(), getargs=None, keys=(), files=(), context=()):
    uptodate = [(value_inputs({key: 1 for key in keys}), [], {})] if keys else []
    if context:
        uptodate.append((context_unchanged(name, list(context), dict, None), [], {}))
    return SimpleNamespace(name=name, task_dep=list(task_dep), setup_tasks=[], getargs=getargs or {},
                           uptodate=uptodate, file_dep=set(files))


def test_the_chain_links_tasks_by_task_dep_and_getargs_and_lists_their_inputs():
    tasks = [_task("image:base", keys=["classroom.images.registry"], files=["/p/images/base/Dockerfile"],
                   context=[("", "/p/images/base"), ("shared/", "/p/images/shared")]),
             _task("image:notebook", getargs={"parent": ("image:base", "ref")}, keys=["courses"]),
             _task("chart:package", task_dep=["image:notebook", "not-drawn"])]
    model = graph.chain(tasks, {"image:base": U, "image:notebook": W, "chart:package": U}, "/p")
    assert sorted(model.edges) == [("image:base", "image:notebook"), ("image:notebook", "chart:package")]
    assert model.inputs == {"config: classroom.images.registry": {"image:base"}, "config: courses": {"image:notebook"},
                            "images/base/": {"image:base"}, "images/shared/": {"image:base"}}
    assert model.states["chart:package"] == M
    dot = graph.to_dot(model).source
    # DOT reads "a:b" in an edge as node a, port b: task ids carry no colon
    assert '"image/base" -> "image/notebook"' in dot and '"image/notebook" -> "chart/package"' in dot
    assert "cluster_image" in dot and "cluster_chart" in dot
    assert graph.COLOURS[W] in dot and graph.COLOURS[M] in dot


def test_dependencies_are_followed_once_in_order():
    by_name = {"a": _task("a", task_dep=["b"]), "b": _task("b", getargs={"x": ("c", "v")}), "c": _task("c")}
    assert graph._with_dependencies(["a", "b"], by_name) == ["a", "b", "c"]
