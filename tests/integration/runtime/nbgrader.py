"""nbgrader and Jupyter, driven inside the running servers of runtime/podrun.py.

Every command runs in the server's container as its user with the environment
of the server process itself (JUPYTERHUB_USER, JUPYTERHUB_API_TOKEN,
JUPYTERHUB_API_URL, DATABASE_URL...): what a terminal or a notebook in that
server would have.
"""

from __future__ import annotations

import json
import re
import textwrap

from tests.integration.runtime.podrun import PodError, Server

EXTENSIONS = ("assignment_list", "course_list", "formgrader")


def server_extensions(server: Server) -> dict[str, bool]:
    """nbgrader's server extensions as the server's own config resolves them (user level wins)."""
    code, out = server.exec(["jupyter", "server", "extension", "list"])
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    found = {}
    for name in EXTENSIONS:
        # the first config dir listed is the user's: its setting is the one in force
        match = re.search(rf"^\s*nbgrader\.server_extensions\.{name} (enabled|disabled)", out, re.M)
        if not match:
            raise PodError(f"`jupyter server extension list` does not list {name}:\n{out}")
        found[name] = match.group(1) == "enabled"
    return found


_CONFIG = textwrap.dedent("""
    import json, sys
    from nbgrader.apps.baseapp import NbGrader  # loads the config files as every nbgrader command does
    app = NbGrader()
    app.initialize([])
    c = app.config
    def get(section, key, default=""):
        value = c[section][key] if key in c[section] else default
        return value if isinstance(value, (bool, str, int)) else getattr(value, "__name__", str(value))
    json.dump({
        "Exchange.root": get("Exchange", "root"),
        "Exchange.path_includes_course": get("Exchange", "path_includes_course", False),
        "Authenticator.plugin_class": get("Authenticator", "plugin_class"),
        "CourseDirectory.course_id": get("CourseDirectory", "course_id"),
        "CourseDirectory.root": get("CourseDirectory", "root"),
    }, sys.stdout)
""")


def effective_config(server: Server, workdir: str | None = None) -> dict:
    """The nbgrader settings in force for a command run in `workdir` (default: home)."""
    code, out = server.exec(["python3", "-c", _CONFIG], workdir=workdir)
    if code != 0:
        raise PodError(f"reading nbgrader's config failed:\n{out}")
    return json.loads(out.strip().splitlines()[-1])


def run_cells(server: Server, cells: list[str], timeout: int = 300) -> str:
    """Execute a notebook of these code cells in a real kernel (nbconvert); the printed output."""
    notebook = {"cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                           "execution_count": None} for source in cells],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    script = textwrap.dedent("""
        import json, sys, tempfile, nbformat
        from nbconvert.preprocessors import ExecutePreprocessor
        nb = nbformat.reads(sys.stdin.read(), as_version=4)
        ExecutePreprocessor(timeout=%d, kernel_name="python3").preprocess(nb, {"metadata": {"path": "."}})
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    print(output["text"], end="")
    """ % timeout)
    # through a file in /tmp: exec_run has no stdin
    path = f"/tmp/cells-{abs(hash(tuple(cells)))}.ipynb"
    code, out = server.exec(["sh", "-c", f'cat > {path} <<"EOF_NB"\n{json.dumps(notebook)}\nEOF_NB\n'
                                         f'python3 -c "$SCRIPT" < {path}; status=$?; rm -f {path}; exit $status'],
                            env={"SCRIPT": script})
    if code != 0:
        raise PodError(f"running the cells failed:\n{out[-4000:]}")
    return out


# ---- an assignment and its round trip -----------------------------------------------------------

ASSIGNMENT = "ps1"
POINTS = 3

# A source notebook in nbgrader's own cell format: one solution cell, one autograded test.
_SOURCE = textwrap.dedent('''
    import nbformat, sys
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    solution = new_code_cell(
        "def double(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION",
        metadata={"nbgrader": {"grade": False, "solution": True, "locked": False, "task": False,
                               "grade_id": "double", "schema_version": 3}})
    test = new_code_cell(
        "assert double(2) == 4\\nassert double(-1) == -2",
        metadata={"nbgrader": {"grade": True, "solution": False, "locked": True, "task": False,
                               "grade_id": "test_double", "points": %d, "schema_version": 3}})
    nb = new_notebook(cells=[new_markdown_cell("Write `double`."), solution, test],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nbformat.write(nb, sys.argv[1])
''' % POINTS)

_ANSWER = textwrap.dedent('''
    import nbformat, sys
    nb = nbformat.read(sys.argv[1], as_version=4)
    answered = 0
    for cell in nb.cells:
        lines = cell.source.split("\\n")
        for i, line in enumerate(lines):
            if line.strip() == "raise NotImplementedError()":
                lines[i] = line.replace("raise NotImplementedError()", "return x + x")
                answered += 1
        cell.source = "\\n".join(lines)
    assert answered == 1, "the released notebook has no stub to answer"
    nbformat.write(nb, sys.argv[1])
''')

_SCORE = textwrap.dedent('''
    import json, sys
    from nbgrader.api import Gradebook
    with Gradebook("sqlite:///" + sys.argv[1], course_id=sys.argv[2]) as gb:
        submission = gb.find_submission(sys.argv[3], sys.argv[4])
        json.dump({"score": submission.score, "max_score": submission.max_score}, sys.stdout)
''')


def must(result: tuple[int, str], what: str) -> str:
    code, out = result
    if code != 0:
        raise PodError(f"{what} failed (exit {code}):\n{out[-4000:]}")
    return out


def create_assignment(grader: Server, course_dir: str):
    """The instructor's part before release: a source notebook, then generate_assignment."""
    must(grader.exec(["mkdir", "-p", f"{course_dir}/source/{ASSIGNMENT}"]), "mkdir source")
    must(grader.exec(["python3", "-c", _SOURCE, f"{course_dir}/source/{ASSIGNMENT}/problem.ipynb"]),
         "writing the source notebook")
    must(grader.exec(["nbgrader", "generate_assignment", ASSIGNMENT, "--force"], workdir=course_dir),
         "nbgrader generate_assignment")


def answer(student: Server, course: str):
    """The student's work: the solution cell filled in."""
    must(student.exec(["python3", "-c", _ANSWER, f"{course}/{ASSIGNMENT}/problem.ipynb"],
                      workdir=student_home(student)), "answering")


def student_home(server: Server) -> str:
    return server.server_env().get("HOME", "/home/jovyan")


def score(grader: Server, course_dir: str, course: str, student: str) -> dict:
    out = must(grader.exec(["python3", "-c", _SCORE, f"{course_dir}/gradebook.db", course, ASSIGNMENT, student]),
               "reading the gradebook")
    return json.loads(out.strip().splitlines()[-1])


def listed(server: Server) -> str:
    """`nbgrader list` as the user: the released assignments they may fetch."""
    return must(server.exec(["nbgrader", "list"], workdir=student_home(server)), "nbgrader list")


def course_directory(grader: Server) -> str:
    return effective_config(grader)["CourseDirectory.root"]


def release(pods, course: str) -> str:
    """ASSIGNMENT generated and released by the course's grader service (once per session)."""
    released = pods.__dict__.setdefault("released", set())
    if course not in released:
        grader = pods.grader(course)
        course_dir = course_directory(grader)
        create_assignment(grader, course_dir)
        must(grader.exec(["nbgrader", "release_assignment", ASSIGNMENT], workdir=course_dir),
             "nbgrader release_assignment")
        released.add(course)
    return ASSIGNMENT
