"""YAML text -> plain data plus the line and column of every node, read as compose-go reads it.

YAML 1.2 scalars (`yes`, `on`, `20:30` stay strings; `0440` is octal as in Go), anchors and
aliases expanded into independent copies, `<<:` merge keys, `!reset` / `!override` tags kept
as markers for the merge step, string keys only, duplicate keys refused, alias bombs refused
as go-yaml refuses them (docker compose's parser).
"""

from __future__ import annotations

import dataclasses
import re

import yaml
from yaml import nodes as ynodes

from reconciler.spec import errors

try:  # libyaml's parser is several times faster; the resolver below stays ours either way
    from yaml import cyaml
    _LIBYAML = True
except ImportError:  # pragma: no cover - PyYAML without libyaml
    _LIBYAML = False

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"
RESET_TAG = "!reset"
OVERRIDE_TAG = "!override"

# A file larger than this once its aliases are expanded is refused, whatever its aliasing.
MAX_NODES = 2_000_000
# go-yaml's alias budget: of the nodes a file decodes, the share that may come from expanding
# aliases is 99% up to ALIAS_RATIO_LOW nodes, then falls linearly to 10% at ALIAS_RATIO_HIGH,
# so aliases add at most about 400,000 nodes to a file, and a classic bomb is refused within
# a few thousand.
ALIAS_RATIO_LOW = 400_000
ALIAS_RATIO_HIGH = 4_000_000
# No Compose attribute nests this deep; the later steps recurse, so refuse it at the door.
MAX_DEPTH = 100


class Reset:
    """`!reset`: the merge step removes the key it stands for from what came before."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "!reset"


RESET = Reset()


@dataclasses.dataclass
class Override:
    """`!override value`: the merge step replaces instead of merging."""

    value: object


@dataclasses.dataclass
class Document:
    """One YAML document: its data and where each path of it was written."""

    file: str
    data: dict
    positions: dict  # path tuple -> (line, column), 1-based

    def place(self, path: tuple) -> errors.Place:
        return place_in(self.file, self.positions, path)


def place_in(file: str, positions: dict, path: tuple) -> errors.Place:
    """The place of `path`, or of its nearest written ancestor."""
    for cut in range(len(path), -1, -1):
        pos = positions.get(path[:cut])
        if pos is not None:
            return errors.Place(file, pos[0], pos[1], path)
    return errors.Place(file, None, None, path)


def allowed_alias_ratio(decoded: int) -> float:
    """The share of `decoded` nodes that may come from aliases (go-yaml's allowedAliasRatio)."""
    if decoded <= ALIAS_RATIO_LOW:
        return 0.99
    if decoded >= ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - ALIAS_RATIO_LOW) / (ALIAS_RATIO_HIGH - ALIAS_RATIO_LOW)


class _Budget:
    """Nodes decoded so far in one file, and how many of them an alias expanded: shared by the
    file's documents, so three documents cannot each spend a whole budget."""

    def __init__(self) -> None:
        self.decoded = 0
        self.aliased = 0

    def excessive(self) -> bool:
        return self.aliased > 100 and self.decoded > 1000 and \
            self.aliased / self.decoded > allowed_alias_ratio(self.decoded)


class _Resolver(yaml.resolver.BaseResolver):
    """The YAML 1.2 core schema with Go's integer forms, as yaml.v3 resolves plain scalars."""


_Resolver.yaml_implicit_resolvers = {}
_Resolver.add_implicit_resolver(BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Resolver.add_implicit_resolver(
    INT,
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0[0-7_]+|[-+]?0o[0-7_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+)$"),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver(NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Resolver.add_implicit_resolver(MERGE, re.compile(r"^(?:<<)$"), ["<"])

class _PyLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                yaml.composer.Composer, _Resolver):
    def __init__(self, stream):  # pragma: no cover - used only without libyaml
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


_Loader: type = _PyLoader
if _LIBYAML:
    class _CLoader(cyaml.CParser, _Resolver):
        def __init__(self, stream):
            cyaml.CParser.__init__(self, stream)
            _Resolver.__init__(self)

    _Loader = _CLoader


def load_text(text: str, file: str) -> list[Document]:
    """Parse every document of `text`; raises SpecError with the place of a syntax error."""
    loader = _Loader(text)
    docs = []
    budget = _Budget()
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                docs.append(_to_document(node, file, budget))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        place = errors.Place(file, mark.line + 1, mark.column + 1) if mark else errors.Place(file)
        raise errors.SpecError(f"invalid YAML: {problem}", place) from None
    except yaml.YAMLError as err:
        raise errors.SpecError(f"invalid YAML: {err}", errors.Place(file)) from None
    finally:
        loader.dispose()
    return docs


def load_file(path: str) -> list[Document]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise errors.SpecError("no such file", errors.Place(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise errors.SpecError(f"cannot read: {err}", errors.Place(path)) from None
    return load_text(text, path)


def _to_document(node: ynodes.Node, file: str, budget: _Budget) -> Document:
    conv = _Converter(file, budget)
    data = conv.value(node, ())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise errors.SpecError("the top level must be a mapping", _mark_place(file, node, ()))
    return Document(file, data, conv.positions)


def _mark_place(file: str, node: ynodes.Node, path: tuple) -> errors.Place:
    mark = node.start_mark
    return errors.Place(file, mark.line + 1, mark.column + 1, path)


class _Converter:
    """Walks the node graph once; aliases become fresh copies, so later steps may mutate freely."""

    def __init__(self, file: str, budget: _Budget) -> None:
        self.file = file
        self.positions: dict = {}
        self.active: set[int] = set()
        # PyYAML hands an alias over as the anchored node itself: a collection met a second
        # time is an alias being expanded.
        self.seen: set[int] = set()
        self.budget = budget
        self.alias_depth = 0
        self.alias_use: tuple = ()  # the path of the outermost alias being expanded

    def _tick(self, count: int, node: ynodes.Node, path: tuple) -> None:
        """Count the `count` nodes a collection holds before converting them, so a bomb is
        refused before it is built."""
        budget = self.budget
        budget.decoded += count
        if self.alias_depth:
            budget.aliased += count
            if budget.excessive():
                raise self._too_much(f"document contains excessive aliasing ({budget.aliased} "
                                     f"of its first {budget.decoded} nodes come from aliases)")
        if budget.decoded > MAX_NODES:
            raise errors.SpecError(f"file too large: more than {MAX_NODES} nodes once "
                                   "aliases are expanded", _mark_place(self.file, node, path))

    def _too_much(self, message: str) -> errors.SpecError:
        # The anchored nodes carry the anchor's marks; the alias was written in its parent.
        place = place_in(self.file, self.positions, self.alias_use[:-1])
        return errors.SpecError(message, dataclasses.replace(place, path=self.alias_use))

    def value(self, node: ynodes.Node, path: tuple):
        if len(path) > MAX_DEPTH:
            raise errors.SpecError(f"nested deeper than {MAX_DEPTH} levels",
                                   _mark_place(self.file, node, path[:MAX_DEPTH]))
        tag = node.tag
        if tag == RESET_TAG:
            return RESET
        if tag == OVERRIDE_TAG:
            if isinstance(node, ynodes.ScalarNode):
                return Override(node.value)
            return Override(self._collection(node, path))
        if isinstance(node, ynodes.ScalarNode):
            return self._scalar(node, path)
        return self._collection(node, path)

    def _collection(self, node: ynodes.Node, path: tuple):
        key = id(node)
        if key in self.active:
            raise errors.SpecError("recursive alias", _mark_place(self.file, node, path))
        aliased = key in self.seen
        if aliased:
            if not self.alias_depth:
                self.alias_use = path
            self.alias_depth += 1
        else:
            self.seen.add(key)
        self.active.add(key)
        try:
            if isinstance(node, ynodes.SequenceNode):
                return self._sequence(node, path)
            return self._mapping(node, path)
        finally:
            self.active.discard(key)
            if aliased:
                self.alias_depth -= 1

    def _sequence(self, node: ynodes.SequenceNode, path: tuple) -> list:
        self._tick(len(node.value), node, path)
        out = []
        for i, item in enumerate(node.value):
            sub = path + (i,)
            self.positions[sub] = (item.start_mark.line + 1, item.start_mark.column + 1)
            out.append(self.value(item, sub))
        return out

    def _mapping(self, node: ynodes.MappingNode, path: tuple) -> dict:
        merged: dict = {}
        explicit: dict = {}
        self._tick(2 * len(node.value), node, path)  # keys count too, as in go-yaml
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                self._merge_into(merged, value_node, path)
                continue
            key = self._key(key_node, path)
            if key in explicit:
                raise errors.SpecError(f"mapping key {key!r} already defined",
                                       _mark_place(self.file, key_node, path + (key,)))
            sub = path + (key,)
            self.positions[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            explicit[key] = self.value(value_node, sub)
        if not merged:
            return explicit
        merged.update(explicit)
        return merged

    def _merge_into(self, merged: dict, value_node: ynodes.Node, path: tuple) -> None:
        sources = value_node.value if isinstance(value_node, ynodes.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, ynodes.MappingNode):
                raise errors.SpecError("a `<<` merge key needs a mapping or a list of mappings",
                                       _mark_place(self.file, source, path))
            data = self._collection(source, path)
            for key, val in data.items():
                # Earlier sources win, as in YAML 1.1 merge keys; explicit keys win over all.
                if key not in merged:
                    merged[key] = val
                    self.positions.setdefault(path + (key,), (source.start_mark.line + 1,
                                                              source.start_mark.column + 1))

    def _key(self, key_node: ynodes.Node, path: tuple) -> str:
        if isinstance(key_node, ynodes.ScalarNode) and key_node.tag == STR:
            return key_node.value
        shown = key_node.value if isinstance(key_node, ynodes.ScalarNode) else "<collection>"
        where = "at top level" if not path else f"in {errors.format_path(path)}"
        raise errors.SpecError(f"non-string key {where}: {shown}",
                               _mark_place(self.file, key_node, path))

    def _scalar(self, node: ynodes.ScalarNode, path: tuple):
        try:
            return self._typed_scalar(node, path)
        except ValueError:  # an explicit tag on a value that is not of that type: `!!int abc`
            raise errors.SpecError(f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}",
                                   _mark_place(self.file, node, path)) from None

    def _typed_scalar(self, node: ynodes.ScalarNode, path: tuple):
        tag, text = node.tag, node.value
        if tag == STR:
            return text
        if tag == NULL:
            return None
        if tag == BOOL:
            return text.lower() == "true"
        if tag == INT:
            return _go_int(text)
        if tag == FLOAT:
            low = text.lower()
            if low.endswith("inf"):
                return float("-inf") if low.startswith("-") else float("inf")
            if low.endswith("nan"):
                return float("nan")
            return float(text.replace("_", ""))
        raise errors.SpecError(f"unsupported YAML tag {tag}", _mark_place(self.file, node, path))


def _go_int(text: str) -> int:
    plain = text.replace("_", "")
    sign = -1 if plain.startswith("-") else 1
    digits = plain.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return sign * int(digits, 8)  # Go's strconv.ParseInt(s, 0, 64): leading 0 means octal
    return sign * int(digits, 0)
