"""The one YAML loader: files users and the shipped ``rules/`` give → typed models.

Every YAML file custtool reads (pipeline, segments, clean, follow-ups, roles, strategies,
the tag library) goes through :func:`read_yaml`: PyYAML's SafeLoader only (SPEC H1: a file
with Python tags such as ``!!python/object`` is refused, never run), with the line of every
key kept. :func:`load_model` checks the data against a pydantic model (unknown keys are
errors) and turns a validation error into one line ``file:line: key.path: what is wrong``
plus a hint — never a pydantic traceback.

Defaults live only in ``rules/*.yaml``: :func:`load_model` reads the shipped file and
overlays the user's file on it key by key (:func:`overlay`), so the CLI, ``custtool run``
and the Python API build the same model from the same files.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from custtool.errors import ConfigError, CusttoolError

RULES_DIR = Path(__file__).resolve().parent / "rules"

#: a key path inside a YAML document: mapping keys and list indexes
KeyPath = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)


def shipped(name: str) -> Path:
    """The shipped rules file ``rules/<name>`` (e.g. ``segments.yaml``)."""
    return RULES_DIR / name


def key_path(path: KeyPath) -> str:
    """``("inputs", "orders", 0, "path")`` → ``inputs.orders[0].path``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class YamlError(ConfigError):
    """A file that is not plain YAML: ``file:line: message``."""

    def __init__(self, file: str, line: int | None, message: str, hint: str) -> None:
        super().__init__(f"{file}{':' + str(line) if line else ''}: {message}", hint)
        self.file, self.line, self.problem = file, line, message


@dataclass
class YamlDoc:
    """A parsed YAML file: its plain data and the line (1-based) of every key and item."""

    path: Path
    text: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)  # line of each key / list item
    value_lines: dict[KeyPath, int] = field(default_factory=dict)  # line where each value starts
    duplicates: list[tuple[KeyPath, int]] = field(default_factory=list)  # keys given twice

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest parent that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def where(self, path: KeyPath) -> str:
        """``file:line`` of ``path`` (``file`` when the line is not known)."""
        line = self.line(path)
        return f"{self.path}" + (f":{line}" if line else "")

    def error(self, path: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        """``ConfigError("file:line: key.path: message", hint)``."""
        key = key_path(path)
        return ConfigError(f"{self.where(path)}: {key + ': ' if key else ''}{message}", hint)


def _build(root: Any, doc: YamlDoc) -> Any:
    """Plain data from a composed node tree, recording lines; scalars built by SafeConstructor."""
    import yaml

    scalars = yaml.constructor.SafeConstructor()
    map_tag = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
    seq_tag = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG

    def build(node: Any, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            if node.tag != map_tag:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"could not determine a constructor for the tag {node.tag!r}",
                    node.start_mark,
                )
            scalars.flatten_mapping(node)  # YAML merge keys (<<)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise yaml.constructor.ConstructorError(
                        None, None, "a mapping key must be plain text", key_node.start_mark
                    )
                key = scalars.construct_object(key_node)
                sub = (*path, key)
                if key in out:
                    doc.duplicates.append((sub, key_node.start_mark.line + 1))
                doc.lines[sub] = key_node.start_mark.line + 1
                doc.value_lines[sub] = value_node.start_mark.line + 1
                out[key] = build(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != seq_tag:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"could not determine a constructor for the tag {node.tag!r}",
                    node.start_mark,
                )
            items = []
            for i, item in enumerate(node.value):
                doc.lines[(*path, i)] = doc.value_lines[(*path, i)] = item.start_mark.line + 1
                items.append(build(item, (*path, i)))
            return items
        try:
            return scalars.construct_object(node)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date 2024-13-01
            raise yaml.MarkedYAMLError(
                problem=f"{node.value!r}: {exc}", problem_mark=node.start_mark
            ) from None

    return None if root is None else build(root, ())


def parse_yaml(text: str, path: str | os.PathLike[str] = "<text>") -> YamlDoc:
    """Parse YAML text (SafeLoader: libyaml's when PyYAML has it, 17× faster); ConfigError ``file:line: …`` for bad YAML or Python tags."""
    import yaml

    doc = YamlDoc(Path(path), text, None)
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        doc.data = _build(root, doc)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = (getattr(exc, "problem", None) or str(exc).splitlines()[0]).strip()
        if isinstance(exc, yaml.constructor.ConstructorError):
            message, hint = (
                f"YAML tag refused ({problem})",
                "rules files are plain YAML: Python tags such as !!python/object are not allowed",
            )
        else:
            message, hint = (
                f"not valid YAML ({problem})",
                "check indentation, colons and quotes at that line",
            )
        raise YamlError(str(path), line, message, hint) from None
    return doc


def read_yaml(
    path: str | os.PathLike[str], *, what: str = "config file", hint: str | None = None
) -> YamlDoc:
    """Read and parse a YAML file; ConfigError when it is missing, not UTF-8 or not YAML."""
    p = Path(path)
    if p.exists() and not p.is_file():  # a folder, a pipe: not "not found", never waited on
        kind = "a folder" if p.is_dir() else "not a regular file"
        raise ConfigError(f"{p}: the {what} is {kind}", "name the YAML file itself", file=str(p))
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found", hint or "check the path", file=str(p))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text", f"save the {what} as UTF-8") from None
    return parse_yaml(text, p)


def load_yaml(
    path: str | os.PathLike[str],
    *,
    what: str = "config file",
    hint: str | None = None,
    empty: Any = None,
) -> Any:
    """The plain data of a YAML file (``empty`` for an empty file)."""
    data = read_yaml(path, what=what, hint=hint).data
    return empty if data is None else data


def overlay(base: Any, user: Any) -> Any:
    """``user`` laid over ``base`` key by key: mappings merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(user, dict):
        out = dict(base)
        for k, v in user.items():
            out[k] = overlay(base[k], v) if k in base else v
        return out
    return user


def _step(tp: Any, part: Any) -> Any:
    """The type one step down ``tp`` at ``part`` (a field name, dict key or list index)."""
    import typing

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        f = tp.model_fields.get(str(part))
        return None if f is None else f.annotation
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    for a in args:  # a union: the first member that can hold ``part``
        sub = _step(a, part)
        if sub is not None:
            return sub
    return None


def _allowed_keys(model: type[BaseModel], loc: KeyPath) -> list[str] | None:
    """The keys a model accepts at ``loc`` (for the hint of an unknown key)."""
    import typing

    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    for cand in (tp, *typing.get_args(tp)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return [f.alias or n for n, f in cand.model_fields.items()]
    return None


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if (
        "input" in err
        and kind not in {"model_type", "dict_type", "value_error"}
        and not isinstance(err["input"], dict | list)
    ):
        msg += f" (got {err['input']!r})"
    return msg


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file: where, which key, what, and how to fix it."""

    file: str
    line: int | None
    key: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.file}{':' + str(self.line) if self.line else ''}: {self.key + ': ' if self.key else ''}{self.message}"


def check(
    model: type[BaseModel], data: Any, docs: list[YamlDoc], *, hint: str | None = None
) -> list[ConfigProblem]:
    """Every problem ``model`` finds in ``data`` (empty when it is valid), with file and line.

    ``docs`` are the files the data came from, most specific first: the line of a key is
    taken from the first one that has it (the user's file before the shipped one).
    """
    from pydantic import ValidationError

    try:
        model.model_validate({} if data is None else data)
    except ValidationError as exc:
        out = []
        seen: set[KeyPath] = set()
        for err in exc.errors():
            loc = tuple(
                p
                for p in err["loc"]
                if not (isinstance(p, str) and ("[" in p or p.startswith(("function-", "union"))))
            )
            if loc in seen:  # a union: one problem per key, not one per member type
                continue
            seen.add(loc)
            doc = next((d for d in docs if d.line(loc) is not None), docs[0])
            err_hint = hint
            if err.get("type") == "extra_forbidden":
                allowed = _allowed_keys(model, loc[:-1])
                if allowed:
                    err_hint = f"allowed keys here: {', '.join(allowed)}"
            out.append(
                ConfigProblem(str(doc.path), doc.line(loc), key_path(loc), _message(err), err_hint)
            )
        return out
    return []


def validate(model: type[M], data: Any, docs: list[YamlDoc], *, hint: str | None = None) -> M:
    """``data`` checked by ``model``; a ConfigError ``file:line: key: what is wrong`` otherwise."""
    problems = check(model, data, docs, hint=hint)
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ConfigError(f"{p}{more}", p.hint)
    return model.model_validate({} if data is None else data)


def load_model(
    model: type[M],
    path: str | os.PathLike[str] | None = None,
    *,
    default: str | None = None,
    what: str = "config file",
    hint: str | None = None,
    prepare: Callable[[Any], Any] | None = None,
) -> M:
    """A config model from the shipped ``rules/<default>`` overlaid with the user's ``path``.

    Without ``default`` the user's file is the whole config (a pipeline file). ``prepare``
    rewrites each file's data before the overlay (e.g. Chinese key names → English).
    """
    prepare = prepare or (lambda data: data)
    docs: list[YamlDoc] = []
    data: Any = None
    if default is not None:
        base = read_yaml(shipped(default), what=what)
        docs.append(base)
        data = prepare(base.data or {})
    if path is not None:
        user = read_yaml(path, what=what, hint=hint)
        if user.duplicates:
            dup_path, line = user.duplicates[0]
            raise ConfigError(
                f"{user.path}:{line}: {key_path(dup_path)}: key given twice", "keep one of them"
            )
        if user.data is not None and not isinstance(user.data, dict):
            raise ConfigError(
                f"{user.path}:1: expected a mapping of keys",
                hint or (f"see rules/{default}" if default else None),
            )
        docs.insert(0, user)
        data = (
            overlay(data, prepare(user.data or {})) if default is not None else prepare(user.data)
        )
    return validate(model, data, docs, hint=hint or (f"see rules/{default}" if default else None))


# --------------------------------------------------------------------------- models
# Every model forbids unknown keys. Models of the shipped rules files have no defaults of
# their own: the values come from rules/*.yaml (a user file overlays it key by key).

Duration = int | float | str  # 365d, 26w, 12m, 1y or days


def _memory_limit(value: Any) -> Any:
    """A memory limit (``1GB``, ``512MB``, bytes) as written, checked by the one parser."""
    from custtool.engines import parse_memory_limit

    try:
        parse_memory_limit(value)
    except CusttoolError as exc:
        raise ValueError(str(exc)) from None
    return value


def _duration(value: Any, what: str) -> Any:
    from custtool.dates import parse_days

    if value is not None:
        try:
            parse_days(value, what)
        except ConfigError as exc:
            raise ValueError(
                f"{value!r} is not a duration; write e.g. 365d, 26w, 12m or 1y"
            ) from exc
    return value


class StrictModel(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


# ---- rules/segments.yaml
class MetricsSettings(StrictModel):
    window: Duration
    growth_window: Duration

    @field_validator("window", "growth_window")
    @classmethod
    def _days(cls, v: Any) -> Any:
        return _duration(v, "window")


class ScoreThresholds(StrictModel):
    recency: list[float] = Field(min_length=4, max_length=4)
    frequency: list[float] = Field(min_length=4, max_length=4)
    monetary: list[float] = Field(min_length=4, max_length=4)


class RfmSettings(StrictModel):
    method: Literal["quantile", "thresholds"]
    thresholds: ScoreThresholds | None
    weights: dict[Literal["r", "f", "m"], float]


class ClassThresholds(StrictModel):
    recency: float
    frequency: float
    monetary: float


class ClassSettings(StrictModel):
    reference: Literal["mean", "median", "thresholds"]
    thresholds: ClassThresholds | None


class TierSettings(StrictModel):
    method: Literal["thresholds", "top"]
    high: float
    mid: float
    top_high_pct: float
    top_mid_pct: float


class LifecycleSettings(StrictModel):
    new_days: Duration
    sleep_days: Duration
    lost_days: Duration
    mature_orders: int = Field(ge=1)
    potential_growth: float

    @field_validator("new_days", "sleep_days", "lost_days")
    @classmethod
    def _days(cls, v: Any) -> Any:
        return _duration(v, "days")


class LtvSettings(StrictModel):
    horizon: Duration
    unit: Literal["days", "weeks"]
    churn_p_alive: float = Field(ge=0, le=1)
    min_customers: int = Field(ge=0)
    min_repeat: int = Field(ge=0)

    @field_validator("horizon")
    @classmethod
    def _days(cls, v: Any) -> Any:
        return _duration(v, "horizon")


class PortraitSettings(StrictModel):
    """``portrait:`` of segments.yaml: the behaviour columns of the portrait (SPEC D8)."""

    channels: dict[str, Literal["online", "offline"]]
    slot_hours: int = Field(ge=1, le=24)
    top_categories: int = Field(ge=1, le=10)

    @field_validator("slot_hours")
    @classmethod
    def _divides_day(cls, v: int) -> int:
        if 24 % v:
            raise ValueError("slot_hours must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24)")
        return v


class LevelSettings(StrictModel):
    """``levels:`` of segments.yaml: the 4-level 客户等级 from the RFM total score."""

    core_min_score: float
    high_min_score: float
    potential_growth: bool
    potential_new: bool


class ContactSettings(StrictModel):
    """``contact:`` of segments.yaml: interaction-based classes (seed 002)."""

    sleep_days: Duration
    new_deal_days: Duration

    @field_validator("sleep_days", "new_deal_days")
    @classmethod
    def _days(cls, v: Any) -> Any:
        return _duration(v, "days")


class OutOfCoreSettings(StrictModel):
    """``out_of_core:`` of segments.yaml: when ``custtool run`` takes the orders out of core
    without being asked (custtool.pipeline.orders_out_of_core)."""

    orders_rows: int = Field(ge=0)
    bytes_per_row: int = Field(ge=1)
    #: DuckDB's memory limit out of core when the pipeline sets none (segment: memory_limit:)
    memory_limit: str | int | None = None

    @field_validator("memory_limit")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        return _memory_limit(v)


class SegmentSettings(StrictModel):
    """``rules/segments.yaml``: every threshold of the segment step."""

    timezone: str
    metrics: MetricsSettings
    rfm: RfmSettings
    classes: ClassSettings
    tiers: TierSettings
    lifecycle: LifecycleSettings
    ltv: LtvSettings
    portrait: PortraitSettings
    levels: LevelSettings
    contact: ContactSettings
    out_of_core: OutOfCoreSettings


# ---- pipeline.yaml (custtool run): no shipped file; an option left out means the step's
# own default (which comes from its rules/*.yaml)
class InputEntry(StrictModel):
    path: str
    channel: str | None = None
    sheet: str | int | None = None
    encoding: str | None = None


def _entries(value: Any) -> Any:
    """``path`` / ``{path: …}`` / a list of either → a list of mappings."""
    if isinstance(value, str | dict):
        value = [value]
    if isinstance(value, list):
        return [{"path": v} if isinstance(v, str) else v for v in value]
    return value


class PipelineInputs(StrictModel):
    customers: list[InputEntry] | None = Field(default=None, min_length=1)
    orders: list[InputEntry] | None = Field(default=None, min_length=1)
    interactions: list[InputEntry] | None = Field(default=None, min_length=1)
    surveys: list[InputEntry] | None = Field(default=None, min_length=1)

    @field_validator("*", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _entries(v)


Names = list[str] | str  # a YAML list or "a,b,c"


class CleanStep(StrictModel):
    keys: Names | None = None
    survivorship: Literal["newest", "channel"] | None = None
    channel_priority: Names | None = None
    id_format: str | None = None
    fuzzy_names: bool | None = None
    rules: str | None = None


class SegmentStep(StrictModel):
    config: str | None = None
    window: Duration | None = None
    engine: Literal["pandas", "duckdb", "spark"] | None = None
    memory_limit: str | int | None = None  # for engine duckdb, e.g. 1GB
    spark_master: str | None = None  # for engine spark, e.g. local[*]

    @field_validator("window")
    @classmethod
    def _days(cls, v: Any) -> Any:
        return _duration(v, "window")

    @field_validator("memory_limit")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        return _memory_limit(v)


class TagStep(StrictModel):
    rules: str | list[str] | None = None
    max_tags: int | None = Field(default=None, ge=1)
    manual: str | None = None


class FollowupsStep(StrictModel):
    rules: str | None = None
    enabled: bool | None = None


ReportFormat = Literal["xlsx", "html", "pdf"]


class ReportStep(StrictModel):
    role: str | None = None
    owner: str | None = None
    mask: bool | None = None
    lang: Literal["zh", "en"] | None = None
    strategies: str | None = None
    segment_sheets: bool | None = None
    sheet_rows: int | None = Field(default=None, ge=1)
    #: report.xlsx / report.html / report.pdf (default: rules/report.yaml, xlsx)
    formats: list[ReportFormat] | None = Field(default=None, min_length=1)
    #: owner: one masked workbook per 负责人 in owners/ (default: rules/report.yaml, none)
    split_by: Literal["owner"] | None = None

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v


class ReportSettings(StrictModel):
    """rules/report.yaml: how large the Excel outputs may grow, which files are written."""

    sheet_rows: int = Field(ge=1)
    formats: list[ReportFormat] = Field(min_length=1)
    split_by: Literal["owner"] | None = None


def load_report_settings(path: str | os.PathLike[str] | None = None) -> ReportSettings:
    """rules/report.yaml overlaid with the user's file."""
    return load_model(ReportSettings, path, default="report.yaml")


def sheet_rows_setting(value: int | None = None) -> int:
    """``value`` when given, else ``sheet_rows`` of rules/report.yaml (the one default)."""
    return int(value) if value is not None else load_report_settings().sheet_rows


def report_formats_setting(value: str | Sequence[str] | None = None) -> list[str]:
    """The report files to write: ``value`` ("xlsx,html,pdf" or a list) when given, else
    ``formats`` of rules/report.yaml; known formats only, each once, in the given order."""
    if value is None:
        return list(load_report_settings().formats)
    parts = [p.strip().lower() for p in value.split(",")] if isinstance(value, str) else value
    out: list[str] = []
    for p in parts:
        if not p:
            continue
        if p not in ("xlsx", "html", "pdf"):
            raise ConfigError(f"unknown report format {p!r}", "use xlsx, html and/or pdf")
        if p not in out:
            out.append(p)
    if not out:
        raise ConfigError("no report format given", "use --format xlsx,html,pdf")
    return out


class CardsStep(StrictModel):
    format: Literal["html", "md", "markdown", "xlsx"] | None = None
    customers: Names | None = None
    segments: Names | None = None
    enabled: bool | None = None
    by: str | None = None


# ---- deliver: of a pipeline file (custtool.deliver); defaults in rules/deliver.yaml
#: what a subscription may send: the run folder's files (custtool.deliver.ATTACHMENTS)
SendKind = Literal["report", "pdf", "html", "csv", "owner_report"]
_ADDRESS = r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$"


def _check_address(value: str) -> str:
    import re

    if not re.match(_ADDRESS, value.strip()):
        raise ValueError(f"{value!r} is not an e-mail address (write e.g. manager@example.cn)")
    return value.strip()


class SmtpConfig(StrictModel):
    """``deliver: smtp:`` — the mail server; the password only from ``password_env``."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: Literal["none", "starttls", "ssl"] | None = None
    user: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    from_: str = Field(alias="from", min_length=3)
    timeout: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=1, le=10)
    backoff: float | None = Field(default=None, ge=0)
    #: never allowed: a password in the file is refused (see the validator)
    password: Any = Field(default=None, exclude=True, repr=False)

    @field_validator("password")
    @classmethod
    def _no_password(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError(
                "a password does not belong in the pipeline file: remove it, put it in an "
                "environment variable (e.g. CUSTTOOL_SMTP_PASSWORD) and name that with password_env"
            )
        return v

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        from email.utils import parseaddr

        _check_address(parseaddr(v)[1] or v)
        return v


class Subscription(StrictModel):
    """One entry of ``deliver: subscriptions:``: who gets which files of a run, and when."""

    name: str = Field(min_length=1)
    to: list[str] | None = Field(default=None, min_length=1)
    owners: dict[str, str] | None = Field(default=None, min_length=1)
    send: list[SendKind] = Field(min_length=1)
    cycle: Literal["weekly", "monthly"] | None = None
    mask: bool | None = None
    role: str | None = None
    subject: str | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_address(a) for a in v]

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return None if v is None else {str(k): _check_address(a) for k, a in v.items()}

    @model_validator(mode="after")
    def _recipients(self) -> Subscription:
        if (self.to is None) == (self.owners is None):
            raise ValueError(
                "give either to: [addresses] or owners: {负责人: address}, not both and not neither"
            )
        if self.owners is not None and set(self.send) != {"owner_report"}:
            raise ValueError(
                "owners: get only their own workbook: use send: [owner_report] here and "
                "another subscription with to: for the other files"
            )
        if self.to is not None and "owner_report" in self.send:
            raise ValueError(
                "owner_report goes to each owner: use owners: {负责人: address} instead of to:"
            )
        return self


class DeliverConfig(StrictModel):
    """``deliver:`` of a pipeline file: the mail server and the subscriptions."""

    smtp: SmtpConfig
    subscriptions: list[Subscription] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> DeliverConfig:
        names = [s.name for s in self.subscriptions]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"subscription names must be unique: {', '.join(twice)}")
        return self


class SmtpDefaults(StrictModel):
    tls: Literal["none", "starttls", "ssl"]
    ports: dict[Literal["none", "starttls", "ssl"], int]
    password_env: str
    timeout: float = Field(gt=0)
    retries: int = Field(ge=1, le=10)
    backoff: float = Field(ge=0)


class SubscriptionDefaults(StrictModel):
    mask: bool


class DeliverSettings(StrictModel):
    """``rules/deliver.yaml``: the defaults of ``deliver:`` and the Chinese subject and body."""

    smtp: SmtpDefaults
    subscription: SubscriptionDefaults
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


def deliver_settings(path: str | os.PathLike[str] | None = None) -> DeliverSettings:
    """rules/deliver.yaml overlaid with the user's file."""
    return load_model(DeliverSettings, path, default="deliver.yaml")


class PipelineFile(StrictModel):
    """A pipeline file (``custtool run``): inputs and each step's options."""

    name: str | None = None
    out: str | None = None
    as_of: date | None = None
    timezone: str | None = None
    fail_on_rejects: int | None = Field(default=None, ge=0)
    #: sensitive columns without CUSTTOOL_KEY: drop, mask or clear (encrypt needs the key)
    sensitive: Literal["encrypt", "drop", "mask", "clear"] | None = None
    inputs: PipelineInputs
    fields: str | None = None
    clean: CleanStep | None = None
    segment: SegmentStep | None = None
    tag: TagStep | None = None
    followups: FollowupsStep | None = None
    report: ReportStep | None = None
    cards: CardsStep | None = None
    # the customer book: a path (relative to this file), false to turn it off; default
    # <out>/custtool.duckdb (custtool.book)
    book: str | bool | None = None
    book_wait: float | None = Field(default=None, ge=0)
    # e-mail subscriptions (custtool.deliver): sent after a successful run, or by `custtool send`
    deliver: DeliverConfig | None = None


# ---- rules/clean.yaml
class IdSettings(StrictModel):
    format: str
    start: int = Field(ge=0)
    defaults: dict[str, str] | None
    codes: dict[str, dict[str, str]] | None


class FuzzySettings(StrictModel):
    threshold: float = Field(ge=0, le=100)
    max_block: int = Field(ge=1)


class FillEntry(StrictModel):
    field: str
    value: str | int | float | None = None
    from_: str | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _one_source(self) -> FillEntry:
        if ("value" in self.model_fields_set) == ("from_" in self.model_fields_set):
            raise ValueError(
                "a fill rule needs exactly one of value: or from: (e.g. {field: owner, value: 公海})"
            )
        return self


class CleanSettings(StrictModel):
    """``rules/clean.yaml``: how `clean` links, merges and numbers customers."""

    keys: Names
    hub_max_names: int = Field(ge=0)
    survivorship: Literal["newest", "channel"]
    channel_priority: Names | None
    conflict_ignore: Names | None
    id: IdSettings
    required: list[str | list[str]] | None
    fill: list[FillEntry] | None
    fuzzy: FuzzySettings
    examples: int = Field(ge=0)


# ---- rules/followups.yaml
class FollowupRuleSettings(StrictModel):
    name: str
    match: dict[str, Any] = Field(min_length=1)
    every_days: int = Field(gt=0)
    methods: list[str] | None = None
    action: str | None = None


class FollowupSettings(StrictModel):
    """``rules/followups.yaml``: reminder rules and status transitions."""

    due_soon_days: int = Field(ge=0)
    rules: list[FollowupRuleSettings] | None
    transitions: dict[str, str] | None


# ---- rules/roles.yaml
class RoleSettings(StrictModel):
    description: str | None = None
    hide_columns: list[str] | None = None
    amounts: bool | None = None
    allow_unmask: bool | None = None
    own_customers_only: bool | None = None


class RolesFile(StrictModel):
    """``rules/roles.yaml``: what each role may see."""

    roles: dict[str, RoleSettings | None] = Field(min_length=1)


# ---- rules/strategies.yaml
Text = str | int | float | list[str | int | float]  # a list is joined with ；


#: Chinese names of the strategy fields
STRATEGY_ALIASES = {
    "目标": "goal",
    "措施": "measures",
    "渠道": "channel",
    "频率": "frequency",
    "负责人": "owner",
    "周期": "cycle",
}


def english_strategy_keys(data: Any) -> Any:
    """A strategies mapping with Chinese field names (目标, 措施, …) turned into English ones."""
    if not isinstance(data, dict):
        return data
    return {
        dim: {
            seg: {STRATEGY_ALIASES.get(k, k): v for k, v in spec.items()}
            if isinstance(spec, dict)
            else spec
            for seg, spec in section.items()
        }
        if isinstance(section, dict)
        else section
        for dim, section in data.items()
    }


class Strategy(StrictModel):
    goal: Text | None = None
    measures: Text | None = None
    channel: Text | None = None
    frequency: Text | None = None
    owner: Text | None = None
    cycle: Text | None = None


class StrategiesFile(StrictModel):
    """``rules/strategies.yaml``: one strategy per segment of each dimension."""

    rfm_class: dict[str, Strategy] | None = None
    tier: dict[str, Strategy] | None = None
    lifecycle: dict[str, Strategy] | None = None


# ---- rules/tags.yaml (the top level; the rules themselves are checked by custtool.tags)
class TagLibraryFile(StrictModel):
    """A tag library: ``version``, declared ``fields`` and the ``tags`` list."""

    version: int | None = None
    fields: dict[str, str | None] | list[str] | None = None
    tags: list[Any]


FunnelStage = Literal["潜在", "意向", "成交", "流失"]


class FunnelSettings(StrictModel):
    """``rules/funnel.yaml``: status values and follow-up results → funnel stages."""

    deals_from_orders: bool
    status: dict[str, FunnelStage]
    results: dict[str, FunnelStage]


def funnel_settings(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The funnel settings: ``rules/funnel.yaml`` overlaid with ``path``."""
    return load_model(
        FunnelSettings,
        path,
        default="funnel.yaml",
        what="funnel rules",
        hint="pass the path of a funnel.yaml (see rules/funnel.yaml)",
    ).model_dump()


def segment_settings(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The segment settings as a dict: ``rules/segments.yaml`` overlaid with ``path``.

    The library functions of the segment step (``customer_metrics``, ``rfm_scores``,
    ``value_tiers``, ``assign_lifecycle`` …) take their defaults from here, so there is no
    second copy of a threshold in Python.
    """
    import copy

    if path is None:
        return copy.deepcopy(_shipped_segment_settings())
    return load_model(
        SegmentSettings,
        path,
        default="segments.yaml",
        what="config file",
        hint="pass the path of a segments.yaml (see rules/segments.yaml)",
    ).model_dump()


@functools.lru_cache(maxsize=1)
def _shipped_segment_settings() -> dict[str, Any]:
    return load_model(SegmentSettings, None, default="segments.yaml").model_dump()
