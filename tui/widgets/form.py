"""A form generated from frozen config dataclasses, with inline validation.

Every field of the given dataclasses becomes one compact row (label + input,
or label + select for fields with choices and for booleans), followed by
an error line that stays hidden until that field is wrong. A field's metadata
gives its allowed values (``choices``) and the label's tooltip (``help``); a
field with ``fixed_by`` metadata (set by something else, as the corpus sets
``vocab_size``) gets no row. Values are parsed
here ("lr must be a number (got 'x')"); range checks are the configs' own
``__post_init__``: their ``ConfigError`` text, which starts with the field
name, is shown under that field. So the form never duplicates the engine's
rules and always offers every option the engine has.

Rows can be grouped under small headings (``headings`` maps the key of a
section's first field to its heading). Left out: layout beyond one column, and
any knowledge of what the fields mean.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from engine.errors import ConfigError


@dataclass(frozen=True)
class FieldSpec:
    """One form row: a config field, its type and allowed values."""

    group: str  # which config it belongs to, e.g. "model" or "train"
    name: str  # the dataclass field name (the book's name: num_hiddens, lr, ...)
    kind: str  # "int" | "float" | "str" | "bool" | "choice"
    default: Any
    choices: tuple[Any, ...] = ()
    optional: bool = False  # an empty input means None
    help: str = ""  # the label's tooltip

    @property
    def key(self) -> str:
        return f"{self.group}-{self.name}"


def specs_for(cls: type, group: str) -> list[FieldSpec]:
    """Form rows for every field of dataclass ``cls`` but those fixed by something else."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if "fixed_by" in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        hint = hints.get(f.name, str)
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        choices = tuple(f.metadata.get("choices", ()))
        if choices:
            kind = "choice"
        elif base is bool:
            kind = "bool"
        elif base is int:
            kind = "int"
        elif base is float:
            kind = "float"
        else:
            kind = "str"
        specs.append(FieldSpec(group, f.name, kind, default, choices, optional, f.metadata.get("help", "")))
    return specs


def parse(spec: FieldSpec, raw: Any) -> Any:
    """The typed value of one input, or ConfigError naming the field."""
    if spec.kind in ("choice", "bool"):
        return raw
    text = str(raw).strip()
    if text == "" and spec.optional:
        return None
    if spec.kind == "int":
        return parse_int(spec.name, text)
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{spec.name} must be a number (got {text!r})") from None
    return text


def parse_int(name: str, raw: str) -> int:
    """``raw`` as an int, or ConfigError naming ``name``."""
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw.strip()!r})") from None


class FormScroll(VerticalScroll, can_focus=False):
    """A form's scrolling column. Its fields take focus (and scroll it into view); the column
    itself is no tab stop, which would show no focus and take no keys a field does not."""


class ConfigForm(FormScroll):
    """Rows for ``specs``; ``values()`` parses them, ``validate()`` checks them."""

    @dataclass
    class Changed(Message):
        """Some field changed; the owner re-validates."""

        form: ConfigForm

    def __init__(self, specs: Sequence[FieldSpec], *, headings: dict[str, str] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.specs = list(specs)
        self.headings = dict(headings or {})  # field key -> heading shown above that row
        self.errors: dict[str, str] = {}  # field key -> message shown
        self.general_error = ""

    def compose(self) -> ComposeResult:
        for spec in self.specs:
            if spec.key in self.headings:
                yield Static(self.headings[spec.key], classes="form-heading")
            with Horizontal(classes="field-row"):
                label = Label(spec.name, classes="field-label")
                label.tooltip = f"{spec.name}: {spec.help}" if spec.help else spec.name
                yield label
                if spec.kind in ("choice", "bool"):
                    options = [("yes", True), ("no", False)] if spec.kind == "bool" else [
                        (str(c), c) for c in spec.choices
                    ]
                    yield Select(options, value=spec.default, allow_blank=False, compact=True, id=f"f-{spec.key}")
                else:
                    value = "" if spec.default is None else str(spec.default)
                    yield Input(value, compact=True, id=f"f-{spec.key}", select_on_focus=True)
            yield Static("", classes="field-error", id=f"e-{spec.key}")
        yield Static("", classes="field-error", id="e-general")

    def set_value(self, group: str, name: str, value: Any) -> None:
        widget = self.query_one(f"#f-{group}-{name}")
        if isinstance(widget, Select):
            widget.value = value
        elif isinstance(widget, Input):
            widget.value = str(value)

    def values(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Parsed values per group, and parse errors per field key."""
        out: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for spec in self.specs:
            widget = self.query_one(f"#f-{spec.key}")
            raw = widget.value  # type: ignore[attr-defined]
            try:
                out.setdefault(spec.group, {})[spec.name] = parse(spec, raw)
            except ConfigError as exc:
                errors[spec.key] = str(exc)
        return out, errors

    def validate(self, build: Callable[[dict[str, dict[str, Any]]], Any]) -> Any:
        """Parse, then ``build(values)``; show errors in place. The built object or None."""
        values, errors = self.values()
        built = None
        general = ""
        if not errors:
            try:
                built = build(values)
            except ValueError as exc:  # ConfigError is a ValueError; a stray one is shown, not raised
                message = str(exc)
                field = message.split(" ", 1)[0]
                keys = [s.key for s in self.specs if s.name == field]
                if keys:
                    errors[keys[0]] = message
                else:
                    general = message
        # Touch only the error lines that change: restyling 30 rows per keystroke is not free.
        shown = {**{spec.key: self.errors.get(spec.key, "") for spec in self.specs}, "general": self.general_error}
        wanted = {**{spec.key: errors.get(spec.key, "") for spec in self.specs}, "general": general}
        for key, message in wanted.items():
            if message != shown[key] or not self.is_mounted:
                line = self.query_one(f"#e-{key}", Static)
                line.update(message)
                line.display = bool(message)
        self.errors, self.general_error = errors, general
        return built

    def first_error(self) -> str:
        """The first message shown, in form order ("" when the form is valid)."""
        for spec in self.specs:
            if spec.key in self.errors:
                return self.errors[spec.key]
        return self.general_error

    def on_mount(self) -> None:
        for line in self.query(".field-error"):
            line.display = False

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))
