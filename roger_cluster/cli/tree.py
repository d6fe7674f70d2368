"""The command tree of an argparse parser, for the generated CLI reference and
shell completion: both are derived from the parsers, so neither can drift
from what the commands really accept.

argparse keeps its tree in private attributes (`_actions`, the subparsers
action's `choices`); they have been stable since Python 3.2, and this module
is the only place that reads them.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """A flag of one command: its spellings, whether it takes a value, its choices."""

    names: tuple[str, ...]
    takes_value: bool
    choices: tuple[str, ...]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of `parser` by name, in the order they were added."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help from the
    parent's listing, so `rogerctl partition start --help` says what it does too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for listed in action._choices_actions:
                sub = action.choices[listed.dest]
                if sub.description is None and listed.help:
                    sub.description = listed.help[0].upper() + listed.help[1:] + "."
                describe_subcommands(sub)


def options(parser: argparse.ArgumentParser) -> list[Option]:
    """The flags of `parser` itself (not of its subcommands)."""
    return [
        Option(
            tuple(action.option_strings),
            action.nargs != 0,
            tuple(str(c) for c in action.choices or ()),
        )
        for action in parser._actions
        if action.option_strings
    ]


def positional_choices(parser: argparse.ArgumentParser) -> list[str]:
    """The values that positional arguments with a fixed set of choices accept."""
    return [
        str(choice)
        for action in parser._actions
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction)
        for choice in action.choices or ()
    ]


def invalid_choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Values outside their flag's choices. argparse checks choices only for values
    given on the command line, not for defaults, which is where environment
    variables go (`ROGER_LOG_LEVEL=verbose`)."""
    return [
        f"argument {'/'.join(action.option_strings)}: invalid choice: {value!r}"
        f" (choose from {', '.join(map(str, action.choices))})"
        for action in parser._actions
        if action.option_strings and action.choices is not None
        if (value := getattr(args, action.dest, None)) is not None and value not in action.choices
    ]


def walk(name: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command under `parser`, depth first, as ("rogerctl partition start", its parser)."""
    yield name, parser
    for sub, subparser in subcommands(parser).items():
        yield from walk(f"{name} {sub}", subparser)


def accept_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let every subcommand of `parser` take its flags too, as people type them
    (`rogerctl nodes --json`, `rogerctl partition show myapp --namespace x`).

    Each subcommand gets a copy of every flag it does not have itself, with the
    default `SUPPRESS`: argparse copies a subcommand's values over the parent's,
    so a flag given before the command (or its environment default) is kept
    unless the same flag is given after it. The copies are left out of the
    subcommand's help, which names them in one line instead.
    """
    shared = [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]
    for _, sub in list(walk(parser.prog, parser))[1:]:
        taken = {name for action in sub._actions for name in action.option_strings}
        copies = [action for action in shared if not taken & set(action.option_strings)]
        if not copies:
            continue
        group = sub.add_argument_group(
            "global options",
            f"{', '.join(action.option_strings[0] for action in copies)}: accepted before or after"
            f" the command (`{parser.prog} --help` says what they do)",
        )
        for action in copies:
            twin = copy.copy(action)
            twin.default = argparse.SUPPRESS
            twin.help = argparse.SUPPRESS
            twin.required = False
            group._add_action(twin)
