"""`doit graph`: the chain as a picture, with what the next run would do.

A doit command (registered in doit.cfg), not a task: drawing needs the task
list and doit's own up-to-date checks, which no task action sees.  It asks
each task what `doit` would ask it (doit's `get_status`, the same checks a run
makes, so the release tasks look at the cluster) and draws:

- the tasks, grouped by stage (image, chart, cluster, release), coloured by
  what the next run does with them:
    will run      its own check fails (a config key, a file, the cluster changed);
    may run       something it depends on will run; doit's early cut-off
                  decides at run time (a rebuilt image with the same content
                  changes nothing downstream);
    up to date    nothing to do;
    cannot check  its check failed (a service unreachable).
- what feeds them: the config keys each task declares (`config_inputs`), and
  its source files summarised per directory.

The model (`chain`, `states`) is pure; `to_dot` builds graphviz's DOT with
the graphviz library, whose `dot` program (Debian's graphviz) draws SVG or PNG.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field

from doit.cmd_base import DoitCmdBase
from doit.exceptions import InvalidCommand

from tasks.checks import value_inputs
from tasks.filetree.state import context_unchanged

WILL_RUN, MAY_RUN, UP_TO_DATE, UNKNOWN = "will run", "may run", "up to date", "cannot check"
# Fill colours: a reader sees at once what an edit does.
COLOURS = {WILL_RUN: "#f4a261", MAY_RUN: "#f9e79f", UP_TO_DATE: "#d5e8d4", UNKNOWN: "#d0d0d0"}
FORMATS = ("svg", "png", "dot")


@dataclass
class Chain:
    """What to draw: tasks with their state, the edges between them, and their inputs."""
    states: dict[str, str]
    edges: list[tuple[str, str]]                 # (upstream task, downstream task)
    inputs: dict[str, set[str]] = field(default_factory=dict)  # input label -> tasks it feeds
    reasons: dict[str, str] = field(default_factory=dict)      # task -> why it will run

    def stage(self, task: str) -> str:
        return task.split(":", 1)[0]


def states(own: dict[str, str], upstream: dict[str, list[str]]) -> dict[str, str]:
    """Each task's state for the next run from its own check and what it depends on.

    `own`: task -> WILL_RUN, UP_TO_DATE or UNKNOWN (doit's status run / up-to-date / error).
    A task whose own check passes may still run when anything upstream will or may run.
    """
    result: dict[str, str] = {}

    def visit(task: str, path: tuple = ()) -> str:
        if task in result:
            return result[task]
        if task in path:  # doit refuses cycles before we get here; never loop on one
            return own.get(task, UNKNOWN)
        state = own.get(task, UNKNOWN)
        if state == UP_TO_DATE and any(visit(dep, path + (task,)) in (WILL_RUN, MAY_RUN)
                                       for dep in upstream.get(task, ())):
            state = MAY_RUN
        result[task] = state
        return state

    for task in own:
        visit(task)
    return result


def source_label(path: str, root: str, directory: bool = False) -> str:
    """A file input summarised as its directory relative to the project ("images/base/")."""
    relative = os.path.relpath(path, root)
    if directory:
        return (path if relative.startswith("..") else relative).rstrip("/") + "/"
    if relative.startswith(".."):
        return os.path.dirname(path) + "/"
    parts = relative.split(os.sep)
    return "/".join(parts[:2]) + ("/" if len(parts) > 2 else "") if len(parts) > 1 else relative


def reason(reasons: dict, root: str) -> str:
    """doit's reasons for running a task, in a few words ("config changed: courses")."""
    failed = [repr(utd) for utd, _args, _kwargs in reasons.get("uptodate_false") or []]
    words = [text for text in failed if not text.startswith("<")]  # named checks only
    for key, what in (("changed_file_dep", "changed"), ("missing_file_dep", "missing"),
                      ("added_file_dep", "added"), ("removed_file_dep", "removed")):
        files = reasons.get(key) or []
        if files:
            first = os.path.relpath(files[0], root)
            words.append(f"{what}: {first}" + (f" and {len(files) - 1} more" if len(files) > 1 else ""))
    if reasons.get("has_no_dependencies"):
        words.append("runs every time")
    if not words and failed:
        words.append("its check failed")
    return "; ".join(words)


def depends_on(task) -> list[str]:
    """The tasks a doit Task waits for: task_dep, setup tasks, and the sources of its getargs."""
    return list(task.task_dep) + list(task.setup_tasks) + [source for source, _ in (task.getargs or {}).values()]


def chain(tasks: list, own: dict[str, str], root: str) -> Chain:
    """The chain of doit Task objects `tasks` (already selected), given each one's own check."""
    names = {t.name for t in tasks}
    upstream: dict[str, list[str]] = {}
    inputs: dict[str, set[str]] = {}
    for task in tasks:
        upstream[task.name] = sorted({dep for dep in depends_on(task) if dep in names})
        for utd, _args, _kwargs in task.uptodate:
            if isinstance(utd, value_inputs):
                for key in utd.keys:
                    inputs.setdefault(f"config: {key}", set()).add(task.name)
            elif isinstance(utd, context_unchanged):  # an image's build context: its directories
                for _prefix, path in utd.roots:
                    inputs.setdefault(source_label(path, root, directory=True), set()).add(task.name)
        for path in task.file_dep:
            inputs.setdefault(source_label(path, root), set()).add(task.name)
    edges = [(dep, task) for task, deps in upstream.items() for dep in deps]
    return Chain(states(own, upstream), edges, inputs)


def to_dot(model: Chain):
    """graphviz.Digraph of the chain: stages as clusters, inputs as notes on the left."""
    import graphviz  # only `doit graph` pays for it

    def node_id(name: str) -> str:  # in an edge, DOT reads "a:b" as node a, port b
        return name.replace(":", "/")

    dot = graphviz.Digraph("classroom", graph_attr={"rankdir": "LR", "fontname": "sans-serif"},
                           node_attr={"fontname": "sans-serif", "fontsize": "11"})
    stages: dict[str, list[str]] = {}
    for task in sorted(model.states):
        stages.setdefault(model.stage(task), []).append(task)
    for stage, members in stages.items():
        with dot.subgraph(name=f"cluster_{stage}", graph_attr={"label": stage, "style": "rounded"}) as group:
            for task in members:
                state = model.states[task]
                why = (model.reasons.get(task) or "") if state == WILL_RUN else ""
                label = "\n".join([task, f"({state})", *textwrap.wrap(why, 40, max_lines=3)])
                group.node(node_id(task), label, shape="box", style="filled,rounded",
                           fillcolor=COLOURS[state], penwidth="2" if state == WILL_RUN else "1")
    for label, fed in sorted(model.inputs.items()):
        node = node_id(f"input {label}")
        dot.node(node, label, shape="note", fontsize="9", color="#888888")
        for task in sorted(fed):
            dot.edge(node, node_id(task), color="#aaaaaa", arrowsize="0.6")
    for upstream, downstream in model.edges:
        dot.edge(node_id(upstream), node_id(downstream))
    with dot.subgraph(name="cluster_legend", graph_attr={"label": "next run", "style": "dashed"}) as legend:
        for state, colour in COLOURS.items():
            legend.node(f"legend {state}", state, shape="box", style="filled,rounded", fillcolor=colour)
    return dot


OPT_OUT = {"name": "out", "short": "o", "long": "out", "type": str, "default": "classroom-graph.svg",
           "help": "file to write; its extension picks the format (svg, png, dot) [default: %(default)s]"}


class Graph(DoitCmdBase):
    doc_purpose = "draw the chain and what the next run would do (SVG, PNG or DOT)"
    doc_usage = "[TASK ...]"
    doc_description = ("Without TASK: the default run's tasks and everything they depend on.\n"
                       "Checks every task as `doit` would (the release tasks ask the cluster); runs nothing.")
    cmd_options = (OPT_OUT,)

    def _execute(self, out, pos_args=None):
        extension = os.path.splitext(out)[1].lstrip(".").lower()
        if extension not in FORMATS:
            raise InvalidCommand(f"graph: --out {out!r}: found extension {extension!r}, expected one of "
                                 + ", ".join(FORMATS))
        by_name = {t.name: t for t in self.task_list}
        wanted = pos_args or list(self.sel_tasks or [])
        unknown = [name for name in wanted if name not in by_name]
        if unknown:
            raise InvalidCommand(f"graph: found no task {', '.join(unknown)}; expected names from `doit list`")
        selected = _with_dependencies(wanted, by_name)
        # Group tasks (image, chart, ...) only gather their subtasks: draw the subtasks.
        drawn = [by_name[n] for n in selected if not (by_name[n].task_dep and not by_name[n].actions)]
        own, reasons = {}, {}
        root = os.getcwd()
        for task in drawn:
            try:
                status = self.dep_manager.get_status(task, by_name, get_log=True)
            except Exception as exc:  # a check that cannot reach its service: drawn as such
                own[task.name], reasons[task.name] = UNKNOWN, str(exc).splitlines()[0] if str(exc) else ""
                continue
            own[task.name] = {"run": WILL_RUN, "up-to-date": UP_TO_DATE}.get(status.status, UNKNOWN)
            if status.status == "run":
                reasons[task.name] = reason(status.reasons, root)
        model = chain(drawn, own, root)
        model.reasons = reasons
        dot = to_dot(model)
        if extension == "dot":
            text = dot.source.encode("utf-8")
        else:
            import graphviz
            try:
                text = dot.pipe(format=extension)
            except graphviz.ExecutableNotFound:
                raise InvalidCommand("graph: graphviz's `dot` program is missing; expected it on PATH "
                                     "(scripts/setup installs Debian's graphviz), or write --out FILE.dot") from None
        from tasks.atomic import write_atomically
        write_atomically(out, text, mode=0o644)
        counts = {state: sum(1 for s in model.states.values() if s == state) for state in COLOURS}
        self.outstream.write(f"graph: {out}: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
                             + "\n")
        return 0


def _with_dependencies(names: list[str], by_name: dict) -> list[str]:
    """`names` and every task they depend on (task_dep, setup, getargs), in a stable order."""
    seen: list[str] = []

    def add(name: str):
        if name in seen or name not in by_name:
            return
        seen.append(name)
        task = by_name[name]
        for dep in depends_on(task):
            add(dep)

    for name in names:
        add(name)
    return seen
