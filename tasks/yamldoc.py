"""Strict YAML loading that remembers where every key came from.

The validator reports errors as `file:line: key.path: ...`, so loading keeps a
map from key path to line number.  Loading is also stricter than PyYAML's
default: a key given twice in one mapping is an error (PyYAML silently keeps
the last one, which hides typos in long course lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

try:  # the C parser is several times faster; fall back where libyaml is absent
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


class YamlError(Exception):
    """A file that could not be read or parsed; `line` is 1-based or None."""

    def __init__(self, problem: str, line: int | None = None):
        super().__init__(problem)
        self.problem = problem
        self.line = line


@dataclass
class YamlDoc:
    data: object
    lines: dict = field(default_factory=dict)  # key path tuple -> 1-based line

    def line_of(self, path: tuple) -> int | None:
        """Line of the deepest part of `path` that exists in the file (None: not even its top key)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def load_file(path: Path) -> YamlDoc:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError("found no such file; expected the YAML file (start from the project's config/)") from None
    except IsADirectoryError:
        raise YamlError("is a directory, expected a YAML file") from None
    except PermissionError:
        raise YamlError("cannot be read: permission denied") from None
    except UnicodeDecodeError as exc:
        raise YamlError(f"is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise YamlError(f"cannot be read: {exc.strerror or exc}") from None
    return load_text(text)


def load_text(text: str) -> YamlDoc:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDoc(data=None)
        if node is not None:
            doc.data = _construct(loader, node, (), doc.lines)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
        if mark is not None:
            raise YamlError(
                f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}",
                mark.line + 1,
            ) from None
        raise YamlError(f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"YAML syntax error: {exc}") from None
    except RecursionError:
        raise YamlError("YAML nesting is too deep") from None
    finally:
        loader.dispose()


def _construct(loader, node, path: tuple, lines: dict):
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        result = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                # every key of the config files is a name; `null:` or `3:` is a slip
                shown = "nothing (null)" if key is None else repr(key)
                raise yaml.constructor.ConstructorError(
                    None, None, f"found the key {shown}; expected a name (keys are text)",
                    key_node.start_mark)
            if key in result:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given at line {lines[path + (key,)]})",
                    key_node.start_mark)
            lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _construct(loader, value_node, path + (key,), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, path + (i,), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
