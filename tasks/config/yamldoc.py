"""Strict YAML loading that remembers where every key came from.

The validator reports errors as `file:line: key.path: ...`, so loading keeps a
map from key path to line number.  Loading is also stricter than PyYAML's
default: a key given twice in one mapping is an error (PyYAML silently keeps
the last one, which hides typos in long course lists).

A config file is input from anyone who can edit it, so loading is bounded:
only a regular file of at most `MAX_BYTES` is read (a symlink to /dev/zero or
a FIFO is refused before a byte is read), aliases are counted (a few hundred
bytes of anchors can otherwise expand to gigabytes), and so are values and
nesting levels.  A scalar YAML 1.1 reads as something other than text
(`1.10` the number 1.1, `on` the boolean true, `0123` the octal 83) is kept
with its written form in `YamlDoc.unquoted`, so the validator can refuse a
reading that changes what was written instead of silently coercing it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# yaml is imported where a file is parsed: config.py reads the files on every
# run (for its cache key) and a cache hit must not pay for the parser.

MAX_BYTES = 256 * 1024   # the committed files are a few KB; thousands of students fit easily
MAX_VALUES = 10_000      # scalars, lists and mappings in one file (what validation must walk)
MAX_MAPPINGS = 1_000     # of those, mappings: cerberus spends about 0.5 ms on each (a course, a dataset)
MAX_ALIASES = 100        # alias uses (*name) in one file
MAX_ALIAS_VALUES = 5_000  # values reached through aliases: `*a` of a 50-item list counts 51
MAX_DEPTH = 32           # nesting levels (the schemas need 5)
MAX_NUMBER_LENGTH = 64   # characters of a scalar YAML reads as a number (int() of 5,000 digits raises)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_TAG_WORDS = {"tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
              "tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:null": "nothing (null)",
              "tag:yaml.org,2002:timestamp": "a date", "tag:yaml.org,2002:binary": "binary data"}


class YamlError(Exception):
    """A file that could not be read or parsed; `line` is 1-based or None."""

    def __init__(self, problem: str, line: int | None = None):
        super().__init__(problem)
        self.problem = problem
        self.line = line


# Plain classes, not dataclasses: config.py imports this module on every run (read_limited, for
# its cache key), and making two dataclasses costs more than the rest of the module.
class Unreadable:
    """A scalar YAML resolves to a type it then fails to build (`2020-99-99`, a 5,000-digit number)."""

    __slots__ = ("kind", "reason")

    def __init__(self, kind: str, reason: str):
        self.kind = kind      # what YAML took it for: "a date", "a number"
        self.reason = reason


class YamlDoc:
    def __init__(self, data: object, lines: dict | None = None, unquoted: dict | None = None):
        self.data = data
        self.lines = {} if lines is None else lines  # key path tuple -> 1-based line
        # key path -> (written text, value YAML read or Unreadable): the scalars that are not text
        self.unquoted = {} if unquoted is None else unquoted

    def line_of(self, path: tuple) -> int | None:
        """Line of the deepest part of `path` that exists in the file (None: not even its top key)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def key_path(path: tuple) -> str:
    """`courses[0].students[2]`: a key path as the error lines show it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


_FILE_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a file is, in words: "a FIFO (named pipe)"."""
    for test, words in _FILE_KINDS:
        if test(mode):
            return words
    return "not a regular file"  # pragma: no cover - every type Linux has is listed


def read_limited(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; YamlError for anything else.

    Opened non-blocking (a FIFO swapped in after the check cannot hang the
    read) and checked with fstat on the open descriptor; never more than
    limit + 1 bytes are read, whatever the file claims its size is."""
    try:
        mode = os.stat(path).st_mode  # a device or FIFO is refused before it is opened
        if not stat.S_ISREG(mode):
            raise YamlError(_not_regular(mode))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise YamlError("found no such file; expected the YAML file (start from the project's config/)") from None
    except PermissionError:
        raise YamlError("cannot be read: permission denied") from None
    except OSError as exc:
        raise YamlError(f"cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise YamlError(_not_regular(info.st_mode))
        if info.st_size > limit:
            raise YamlError(_too_large(info.st_size, limit, exact=True))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # grew since fstat (or a file that does not know its size)
            raise YamlError(_too_large(size, limit))
        return b"".join(chunks)
    except OSError as exc:
        raise YamlError(f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory, expected a YAML file"
    return f"found {file_kind(mode)}; expected a regular YAML file"


def _too_large(size, limit, exact=False) -> str:
    return (f"found a file of {'' if exact else 'more than '}{size if exact else limit:,} bytes; "
            f"expected a YAML file of at most {limit:,} bytes")


def load_file(path: Path) -> YamlDoc:
    data = read_limited(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"is not UTF-8 text (byte {exc.start})") from None
    return load_text(text)


def load_text(text: str) -> YamlDoc:
    import yaml

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C: several times faster
    if len(text) > MAX_BYTES:  # load_file caps bytes; this caps callers that pass text
        raise YamlError(_too_large(len(text), MAX_BYTES, exact=True))
    try:
        loader = loader_class(text)
    except UnicodeEncodeError as exc:  # lone surrogates: only text that did not come from UTF-8 bytes
        raise YamlError(f"is not UTF-8 text (character {exc.start})") from None
    try:
        node = loader.get_single_node()
        doc = YamlDoc(data=None)
        if node is not None:
            doc.data = _Builder(loader, doc).build(node)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(" ".join(filter(None, [exc.context, exc.problem])).split()) or "invalid YAML"
        if mark is not None:
            raise YamlError(
                f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}",
                mark.line + 1,
            ) from None
        raise YamlError(f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # YAML admits no control characters but tab and line breaks
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlError(f"YAML syntax error at line {line}: found the character U+{code:04X}, which YAML "
                        "does not allow in a file; expected text (in a double-quoted string, write it as "
                        "an escape)", line) from None
    except yaml.YAMLError as exc:
        raise YamlError("YAML syntax error: " + " ".join(str(exc).split())) from None
    except RecursionError:  # MAX_DEPTH stops nesting long before; kept as the last guard
        raise YamlError(f"found nesting deeper than {MAX_DEPTH} levels; expected at most {MAX_DEPTH}") from None
    finally:
        loader.dispose()


class _Builder:
    """Builds plain dicts, lists and scalars from the node graph, within the budgets.

    An alias is the same node object as its anchor, so a node met a second
    time was reached through an alias: each such meeting counts, and so does
    every value below it.  The work is therefore bounded by the file's size
    plus MAX_ALIAS_VALUES, whatever the anchors multiply to."""

    def __init__(self, loader, doc: YamlDoc):
        self.loader, self.doc = loader, doc
        self.seen: set[int] = set()
        self.open: set[int] = set()  # nodes being built: an alias to one of them is a cycle
        self.values = self.mappings = self.aliases = self.alias_values = 0

    def build(self, node, path=(), alias_line=None, depth=0):
        """The value of `node` at `path`; `alias_line`: where the alias that led here is used (or None)."""
        import yaml

        line = node.start_mark.line + 1  # an aliased node's own line is its anchor's
        used_at = self.doc.lines.get(path) or (self.doc.line_of(path[:-1]) if path else None) or line
        self.doc.lines.setdefault(path, line)
        if id(node) in self.open:
            raise YamlError(f"{key_path(path)}: found an alias to a value that contains it; "
                            "expected an alias to a value defined before it", used_at)
        if id(node) in self.seen and alias_line is None:
            alias_line = used_at
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise YamlError(f"found more than {MAX_ALIASES} aliases (*name); expected at most "
                                f"{MAX_ALIASES} (write the values out)", alias_line)
        self.seen.add(id(node))
        through = "aliases that expand to " if alias_line is not None else ""
        if alias_line is not None:
            self.alias_values += 1
            if self.alias_values > MAX_ALIAS_VALUES:
                raise YamlError(f"found {through}more than {MAX_ALIAS_VALUES:,} values; "
                                f"expected at most {MAX_ALIAS_VALUES:,} (write the values out)", alias_line)
        self.values += 1
        if self.values > MAX_VALUES:
            raise YamlError(f"found {through}more than {MAX_VALUES:,} values; expected at most "
                            f"{MAX_VALUES:,} in one file", alias_line or line)
        if depth > MAX_DEPTH:
            raise YamlError(f"found nesting deeper than {MAX_DEPTH} levels; expected at most {MAX_DEPTH}",
                            line)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, yaml.MappingNode):
            self.mappings += 1
            if self.mappings > MAX_MAPPINGS:
                raise YamlError(f"found {through}more than {MAX_MAPPINGS:,} mappings; expected at most "
                                f"{MAX_MAPPINGS:,} in one file", alias_line or line)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, alias_line, depth)
            return [self.build(item, path + (i,), alias_line, depth + 1) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _mapping(self, node, path, alias_line, depth):
        import yaml

        result, merged = {}, {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: built here, within the budgets
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                # the first mapping listed wins (so it is merged last), keys written here win over all
                for source in reversed(sources):
                    merged.update(self._merge_source(source, path, alias_line, depth, key_node))
                continue
            key = self._key(key_node)
            if key in result:
                raise YamlError(
                    f"YAML syntax error at line {key_node.start_mark.line + 1}, column "
                    f"{key_node.start_mark.column + 1}: duplicate key {key!r} (first given at line "
                    f"{self.doc.lines[path + (key,)]})", key_node.start_mark.line + 1)
            self.doc.lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, path + (key,), alias_line, depth + 1)
        if not merged:
            return result
        for key, (value, lines, unquoted) in merged.items():
            if key not in result:  # a merged value's lines and written forms are those of its anchor
                self.doc.lines.update(lines)
                self.doc.unquoted.update(unquoted)
        return {**{key: value for key, (value, _, _) in merged.items()}, **result}

    def _merge_source(self, source, path, alias_line, depth, key_node) -> dict:
        """key -> (value, its lines, its unquoted scalars) of one mapping merged with `<<`."""
        own_doc, self.doc = self.doc, YamlDoc(data=None)  # recorded apart: a merged key may be overridden
        self.doc.lines[path] = key_node.start_mark.line + 1  # where the `<<` is: the alias' use
        try:
            value = self.build(source, path, alias_line, depth + 1)
            scratch = self.doc
        finally:
            self.doc = own_doc
        if not isinstance(value, dict):
            raise YamlError(f"{key_path(path) or 'the file'}: found a merge key (<<) with {_words(value)}; "
                            "expected an alias to a mapping", key_node.start_mark.line + 1)
        at = len(path)
        parts = {key: (item, {}, {}) for key, item in value.items()}
        for index, table in ((1, scratch.lines), (2, scratch.unquoted)):
            for sub_path, entry in table.items():
                if len(sub_path) > at and sub_path[at] in parts:
                    parts[sub_path[at]][index][sub_path] = entry
        return parts

    def _key(self, key_node):
        import yaml

        key = self._construct(key_node) if isinstance(key_node, yaml.ScalarNode) else key_node
        if not isinstance(key, str):
            # every key of the config files is a name; `null:` or `3:` is a slip
            shown = ("nothing (null)" if key is None else "a list" if isinstance(key, yaml.SequenceNode)
                     else "a mapping" if isinstance(key, yaml.MappingNode)
                     else "unreadable text" if isinstance(key, Unreadable) else repr(key))
            mark = key_node.start_mark
            raise YamlError(f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: "
                            f"found the key {shown}; expected a name (keys are text)", mark.line + 1)
        return key

    def _scalar(self, node, path):
        value = self._construct(node)
        if not isinstance(value, str):
            self.doc.unquoted[path] = (node.value, value)
            if isinstance(value, Unreadable):
                return node.value  # the validator refuses it; until then it is the text written
        return value

    def _construct(self, node):
        if node.tag == _STR_TAG:
            return node.value  # what PyYAML's str constructor returns, without its per-call overhead
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_LENGTH:
            return Unreadable(_TAG_WORDS[node.tag], f"more than {MAX_NUMBER_LENGTH} characters")
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, ArithmeticError) as exc:  # e.g. the date 2020-99-99
            return Unreadable(_TAG_WORDS.get(node.tag, "a value"), str(exc).splitlines()[0][:80])


def _words(value) -> str:
    return "a list" if isinstance(value, list) else "text" if isinstance(value, str) else repr(value)
