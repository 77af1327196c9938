"""The one way a file under conf/ is read: YAML as data only, ``key=value`` overrides, then a frozen pydantic model.

YAML is read with PyYAML's safe loader (no tags, no code), taught one YAML 1.2 rule that YAML 1.1 lacks: ``1e-8``
(no dot) is a number, not the string "1e-8", and one rule of its own: a key written twice in a mapping is refused
(PyYAML keeps the last silently, so an edit lower in a file would quietly undo one above it). Files are UTF-8.
Overrides are parsed by the same loader. A problem of any kind (the file unreadable, not UTF-8, not YAML, a key
twice, of the wrong shape, a value out of range) is one ``BadInput`` line, ``<file>: <dotted key>: <what is
wrong>``, raised before anything is written.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, ClassVar, TypeVar, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError

from study.errors import BadInput

CONF = Path(__file__).resolve().parents[2] / "conf"
Model = TypeVar("Model", bound=BaseModel)


class Frozen(BaseModel):
    """A block of a config file: every key declared, no other allowed, immutable once read."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    unknown_key: ClassVar[str] = "unknown key"  # how an undeclared key is named (e.g. "unknown optimizer")


# The scalar types every model uses: strict (no bool for a number, no "3" for 3), finite.
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Positive = Annotated[float, Strict(), Field(allow_inf_nan=False, gt=0)]
Unit = Annotated[float, Strict(), Field(allow_inf_nan=False, gt=0, lt=1)]  # strictly between 0 and 1
Count = Annotated[int, Strict(), Field(ge=1)]
Natural = Annotated[int, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), Field(min_length=1)]


def at_most(high: int | float, why: str, shown: str | None = None) -> AfterValidator:
    """An upper bound that says why, for ``Annotated[..., at_most(...)]`` next to a field: "must be at most
    10000 (why), got 20000". ``shown`` writes the bound another way (``"below 2**32"``)."""
    def check(value):
        if value > high:
            raise ValueError(f"must be {shown or f'at most {high}'} ({why}), got {value!r}")
        return value
    return AfterValidator(check)


class KeyProblem(ValueError):
    """Raised by a model's own check about one of its keys: the message then names ``model key . sub``."""

    def __init__(self, sub: str, problem: str):
        super().__init__(problem)
        self.sub = sub


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's floats: 1e-8 and 1E+3 are numbers (YAML 1.1 wants 1.0e-8)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def shown(path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_yaml(path: Path, where: str | None = None) -> dict:
    """The file's top-level mapping; ``where`` is how the file is named in a message (default: ``shown``)."""
    where = where or shown(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise BadInput(where, f"cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:  # the locale's codec would guess; a config means the same on every machine
        line = raw.count(b"\n", 0, e.start) + 1
        raise BadInput(where, f"not UTF-8 text: byte {e.start} (line {line}) is 0x{raw[e.start]:02x}, which "
                              f"UTF-8 cannot decode; save the file as UTF-8") from None
    try:
        loaded = _document(text, where)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise BadInput(where, f"not valid YAML (malformed{at}): {problem}") from None
    except RecursionError:  # PyYAML composes nested nodes recursively; no config of ours nests more than a few
        raise BadInput(where, "not valid YAML for a config: nested too deeply") from None
    if not isinstance(loaded, dict):
        raise BadInput(where, f"expected a mapping of keys, got {type(loaded).__name__}")
    return loaded


def _document(text: str, where: str, path: tuple = (), one_line: bool = False):
    """The YAML document in ``text`` as Python data, once no mapping in it has a key twice (``_refuse_duplicate_keys``;
    ``path`` and ``one_line`` as there). yaml.YAMLError for text that is not YAML."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, where, path, one_line)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, where: str, path: tuple = (), one_line: bool = False,
                           seen_nodes: set | None = None) -> None:
    """A key written twice in any mapping of the document, at any depth, is one line naming it and both lines
    (both columns for ``one_line`` text: an override's value). ``path`` is the dotted key the document sits under.
    Keys merged in with ``<<: *anchor`` may be overridden (that is what a merge is for); only keys written out count.
    An alias is walked once (``seen_nodes``): a node shared by many aliases is not walked again and again."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_at = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                at = key.start_mark.column + 1 if one_line else key.start_mark.line + 1
                if (key.tag, key.value) in first_at:
                    raise BadInput(f"{where}: {'.'.join((*path, name))}",
                                   f"written twice in one mapping ({'columns' if one_line else 'lines'} "
                                   f"{first_at[key.tag, key.value]} and {at}); keep one")
                first_at[key.tag, key.value] = at
            _refuse_duplicate_keys(value, where, (*path, name), one_line, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, where, (*path, str(i)), one_line, seen_nodes)


def scalar(text: str, where: str = "override", key: str = ""):
    """An override's value as the file would read it (``3`` a number, ``1e-3`` too, ``iris`` text); a mapping
    written in it (``split={val: 0.1, test: 0.1}``) may not repeat a key either (``where``, ``key``: for the
    message)."""
    try:
        return _document(text, where, tuple(key.split(".")) if key else (), one_line=True)
    except (yaml.YAMLError, RecursionError):
        return text


def apply_overrides(raw: dict, overrides, keys, list_keys=()) -> dict:
    """``raw`` with ``key=value`` items applied (a copy): lists comma-separated for ``list_keys``, nested keys
    dotted (``epochs.iris=10``); a dotted key under a scalar keeps the scalar as that mapping's ``default``."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"override {item!r}", "expected key=value")
        if key.split(".")[0] not in keys:
            raise BadInput(f"override {item!r}", f"unknown key {key.split('.')[0]!r}; keys: {', '.join(sorted(keys))}")
        where = f"override {item!r}"
        parsed = [scalar(v, where, key) for v in value.split(",")] if key in list_keys else scalar(value, where, key)
        node, parts = raw, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if node.get(part) is None else {"default": node[part]}
            node = node[part]
        node[parts[-1]] = parsed
    return raw


def validate(model: type[Model], raw: dict, where: str) -> Model:
    """``raw`` as ``model``, or the first problem as one BadInput line naming ``where`` and the dotted key."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        key, problem = describe(model, error.errors()[0])
        raise BadInput(f"{where}: {key}" if key else where, problem) from None


def load(model: type[Model], path: Path, where: str | None = None, overrides=(), list_keys=()) -> Model:
    """Read, override, validate: the file at ``path`` as a frozen ``model``."""
    where = where or shown(path)
    raw = read_yaml(path, where)
    if overrides:
        raw = apply_overrides(raw, overrides, set(model.model_fields), list_keys)
    return validate(model, raw, where)


def describe(model: type[BaseModel], err: dict) -> tuple[str, str]:
    """(dotted key, problem) of one pydantic error, in the house's words: "must be ..., got ...", "missing",
    "unknown key; expected one of ..."."""
    loc = [str(part) for part in err["loc"]]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, KeyProblem):
        return ".".join(loc + [cause.sub]), str(cause)
    if err["type"] == "missing":
        return ".".join(loc), "missing"
    if err["type"] == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        keys = ", ".join(owner.model_fields) if owner else ""
        what = getattr(owner, "unknown_key", "unknown key")
        return ".".join(loc), f"{what}; expected one of {keys}" if keys else what
    if err["type"] in ("value_error", "assertion_error"):
        return ".".join(loc), str(cause) if cause else err["msg"]
    ctx = err.get("ctx") or {}
    if err["type"] == "greater_than" and ctx.get("gt") == 0:
        return ".".join(loc), f"must be positive, got {err['input']!r}"
    if err["type"] == "greater_than_equal" and ctx.get("ge") == 1 and isinstance(err["input"], int):
        return ".".join(loc), f"must be a positive integer, got {err['input']!r}"
    if err["type"] in ("too_short", "too_long"):
        most = err["type"] == "too_long"
        n = ctx.get("max_length" if most else "min_length")
        return ".".join(loc), f"must have {'at most' if most else 'at least'} {n} item{'s' * (n != 1)}, " \
                              f"got {err['input']!r}"
    problem = err["msg"].replace("Input should be", "must be", 1).replace("a valid dictionary", "a mapping")
    problem = re.sub(r" or instance of \w+", "", problem)
    problem = problem[0].lower() + problem[1:]
    return ".".join(loc), f"{problem}, got {err['input']!r}"


def _model_at(model: type[BaseModel], loc: list[str]):
    """The model class that holds the key at ``loc`` (None when the path leaves the declared models)."""
    for part in loc:
        field = model.model_fields.get(part)
        kinds = [getattr(field, "annotation", None), *get_args(getattr(field, "annotation", None))]  # X | None
        models = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if not models:
            return None
        model = models[0]
    return model
