"""The command line's typer app, and how a library hint's parameters are spelled as its options."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

import typer

__all__ = ["app", "command_options", "spell_option", "storage_options_of"]

app = typer.Typer(
    name="cellvol",
    help="Very large 3-D microscopy volumes as pyramidal, sharded OME-Zarr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Library keywords whose option has another name; any other keyword is the option's own name.
_OPTION_OF_KEYWORD = {"n_levels": "levels", "memory_limit": "memory_limit_mib"}


def command_options(args: Sequence[str]) -> dict[str, Any]:
    """The options of the command ``args`` runs, by parameter name (the group's if none).

    Parameters
    ----------
    args
        A command line, without the program's name.

    Returns
    -------
    dict
        Each option's parameter name (``"endpoint_url"``) to its click option, whose ``opts``
        are its spellings (``["--endpoint-url"]``).
    """
    group = typer.main.get_command(app)
    command: Any = group
    commands = getattr(group, "commands", {})
    for arg in args:
        if arg in commands:
            command = commands[arg]
            break
    return {p.name: p for p in command.params if p.param_type_name == "option" and p.name}


def spell_option(options: dict[str, Any], keyword: str, value: str) -> str:
    """The command line for the library's ``keyword=value``: ``--overwrite``, ``--port 0``.

    ``value`` is Python source text. The command's own option of that name is used; a
    keyword the command has no option for keeps its Python spelling.
    """
    option = options.get(_OPTION_OF_KEYWORD.get(keyword, keyword))
    if option is None:
        return f"{keyword}={value}"
    if option.is_flag:
        if value == "False" and option.secondary_opts:
            return str(option.secondary_opts[0])
        return str(option.opts[0])
    return f"{option.opts[0]} {_option_value(value)}"


def _option_value(value: str) -> str:
    """Python source text as a command-line value: ``'URL'`` to URL, ``(z, y, x)`` to Z,Y,X."""
    names = re.fullmatch(r"\(\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*\)", value)
    if names:
        return ",".join(n.strip().upper() for n in names.group(1).split(","))
    try:
        literal = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    if isinstance(literal, tuple):
        return ",".join(str(v) for v in literal)
    return str(literal)


def storage_options_of(endpoint_url: str | None, anon: bool) -> dict[str, Any] | None:
    """The storage options the ``--endpoint-url`` and ``--anon`` options ask for, or None."""
    options: dict[str, Any] = {}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    if anon:
        options["anon"] = True
    return options or None
