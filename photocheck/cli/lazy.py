"""Start-up cuts in how typer builds and parses the command line; what each command does is unchanged.

typer builds every command's click object on each start and coerces every parameter, even one left at
its default, through a pydantic adapter. Here the root group builds only the command that runs (click's
lazy-loading group) and an adapter is built only for a value that needs one. The second reaches into
typer's private modules, so it is applied only on the typer release it was tested with (TESTED_TYPER, the
one in uv.lock); any other typer parses as it always does, only slower to start. Guarded by
tests/test_cli.py and tests/test_stat_cache.py.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
import typer.core
from typer.core import TyperGroup

# typer releases whose private coercion modules defer_pydantic() was tested against (uv.lock's).
TESTED_TYPER = ("0.29.",)

# Every command by name, in typer's `photocheck --help` order (commands, then groups):
# (module in photocheck.cli, its command function or typer sub-app).
COMMANDS = {
    "enroll": ("enroll_cmd", "enroll"),
    "scan": ("scan_cmd", "scan"),
    "check-text": ("text_cmd", "check_text"),
    "redact": ("redact_cmd", "redact"),
    "publish": ("publish_cmd", "publish"),
    "recheck": ("publish_cmd", "recheck"),
    "forget": ("protect_cmd", "forget"),
    "purge": ("protect_cmd", "purge"),
    "backup": ("protect_cmd", "backup"),
    "serve": ("serve_cmd", "serve"),
    "roster": ("roster_cmd", "app"),
    "review": ("review_cmd", "app"),
    "audit": ("audit_cmd", "app"),
    "keys": ("protect_cmd", "keys_app"),
    "user": ("user_cmd", "app"),
}


def build_command(name: str, like: typer.Typer) -> Any:
    """The click command `name`, built by typer as it would be as a command of `like`."""
    module, attr = COMMANDS[name]
    target = getattr(importlib.import_module(f"photocheck.cli.{module}"), attr)
    one = typer.Typer(pretty_exceptions_short=like.pretty_exceptions_short, rich_markup_mode=like.rich_markup_mode,
                      suggest_commands=like.suggest_commands)
    if isinstance(target, typer.Typer):
        one.add_typer(target, name=name)
    else:
        one.command(name)(target)
    return typer.main.get_group(one).commands[name]


class _Commands(MutableMapping):
    """A group's commands: every name is known (for --help and "did you mean"), each built on first use."""

    def __init__(self, build: Callable[[str], Any]) -> None:
        self._build = build
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = self._build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("photocheck's commands cannot be removed")

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **self._built})

    def __len__(self) -> int:
        return len({**dict.fromkeys(COMMANDS), **self._built})


def lazy_group(like: Callable[[], typer.Typer]) -> type[TyperGroup]:
    """A root group class whose commands are COMMANDS, built as commands of the Typer `like()` returns."""

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            self.commands = _Commands(lambda name: build_command(name, like()))

        def list_commands(self, ctx: Any) -> list[str]:
            return list(self.commands)

    return LazyGroup


_typer_runtime_param = typer.core.build_runtime_param  # typer's own, before defer_pydantic()


def defer_pydantic(version: str = typer.__version__) -> bool:
    """Make typer build a parameter's pydantic adapter only for a value that needs one; False (and
    typer left alone) on a typer release this was not tested with, or whose internals differ."""
    if not version.startswith(TESTED_TYPER):
        return False
    try:
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam, resolve_type_descriptor
        from typer._param_types import coerce_cli_path, routes_to_path
    except ImportError:
        return False

    @dataclass(frozen=True)
    class DeferredRuntimeParam(RuntimeParam):
        """typer's coercion of one parameter, its pydantic adapter built on the first value that needs it
        (a parameter left at its default needs none). A plain Path (or list of them) given as text is
        made a Path here and checked by typer's own path code, as typer's adapter would; a value that
        fails those checks goes through typer's adapter, whose message quotes the text as typed."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            is_list = get_origin(self.annotation) is list
            leaf = get_args(self.annotation)[0] if is_list else self.annotation
            if leaf is Path and self.parameter_info.path_type in (None, Path) and routes_to_path(leaf, self.parameter_info):
                texts = value if is_list and isinstance(value, (list, tuple)) else [value]
                if (is_list or isinstance(value, str)) and all(isinstance(v, str) for v in texts):
                    try:
                        paths = [coerce_cli_path(Path(v), self.parameter_info, path_type=Path, param=param, ctx=ctx)
                                 for v in texts]
                        return paths if is_list else paths[0]
                    except BadParameter:
                        pass
            typer_param = _typer_runtime_param(resolve_type_descriptor(self.annotation, self.parameter_info))
            return typer_param._coerce_value(value, param=param, ctx=ctx)

    def runtime_param(descriptor: Any) -> Any:
        if descriptor.file_annotation is not None:  # typer opens files itself, without pydantic
            return _typer_runtime_param(descriptor)
        return DeferredRuntimeParam(annotation=descriptor.annotation, parameter_info=descriptor.parameter_info)

    typer.core.build_runtime_param = runtime_param
    return True


DEFERRED = defer_pydantic()
