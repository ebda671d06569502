"""MkDocs hook: the parts of the reference that the code already declares, generated at build time.

A page asks for one with a marker line, `<!-- generated: NAME -->`; the hook replaces it with Markdown built from
the click commands and job/config.py, so an option, its variable and its default are written down once, in the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import click

MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)
PREFIX = "GAN_"


def _commands() -> dict[str, click.Command]:
    """Every subcommand of both programs, by its full name ('gan-job train')."""
    from job.cli import main as job_main
    from serving.cli import main as digits_main

    return {
        f"{program} {name}": command
        for program, group in (("gan-job", job_main), ("gan-digits", digits_main))
        for name, command in group.commands.items()
    }


def _default_text(param: click.Parameter) -> str:
    if isinstance(param.show_default, str):
        return param.show_default
    if param.required:
        return "required"
    if param.default is None:
        return "none"
    return f"`{str(param.default).lower() if isinstance(param.default, bool) else param.default}`"


def _flag(param: click.Parameter) -> str:
    return " / ".join(f"`{name}`" for name in [*param.opts, *getattr(param, "secondary_opts", [])])


def gan_variables() -> str:
    """Every GAN_ variable, the options that read it and the default of the first."""
    readers: dict[str, list[tuple[str, click.Parameter]]] = {}
    for name, command in _commands().items():
        for param in command.params:
            if isinstance(param.envvar, str) and param.envvar.startswith(PREFIX):
                readers.setdefault(param.envvar, []).append((name, param))
    rows = ["| variable | read by | default |", "|---|---|---|"]
    for variable, uses in readers.items():
        read_by = "<br>".join(f"`{name}` {_flag(param)}" for name, param in uses)
        rows.append(f"| `{variable}` | {read_by} | {_default_text(uses[0][1])} |")
    return "\n".join(rows)


def resumable_options() -> str:
    """The training options a resumed run may change, and those that define the run."""
    from job.config import flag_of, options

    declared = options()
    may = ", ".join(f"`{flag_of(name)}`" for name, option in declared.items() if option.resumable)
    defining = ", ".join(f"`{flag_of(name)}`" for name, option in declared.items() if not option.resumable)
    return f"- **May change between starts:** {may}.\n- **Define the run** (another value is refused): {defining}."


def presets() -> str:
    """The presets' hyper-parameters, as job/presets.yaml declares them."""
    from job.config import PRESETS

    rows = ["| preset | learning rate | beta_1 | beta_2 | moving average's decay |", "|---|---|---|---|---|"]
    for name, hyper in PRESETS.items():
        decay = f"{hyper.ema_decay:g}" if hyper.ema_decay else "off"
        rows.append(f"| `{name}` | {hyper.learning_rate:g} | {hyper.beta_1:g} | {hyper.beta_2:g} | {decay} |")
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "gan-variables": gan_variables,
    "resumable-options": resumable_options,
    "presets": presets,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: no generated part named {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
