"""Click command groups whose errors are one line: `Error: …` on stderr and the exception's exit code.

Click prints a usage error as three lines (usage, a hint, the error). A batch job's log, a Kubernetes event or a
script reads the first line, so both CLIs (gan-job and gan-digits) say it in one.
"""

from __future__ import annotations

import sys

import click


class OneLineErrors(click.Group):
    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def plural(count: int, word: str) -> str:
    """A count in a message: '1 run', '3 runs'."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"
