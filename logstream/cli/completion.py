"""``logstream completion bash|zsh|fish``: print the shell completion script."""

from __future__ import annotations

import click

EPILOG = """\b
Install:
  bash:  logstream completion bash > ~/.local/share/bash-completion/completions/logstream
  zsh:   logstream completion zsh > "${fpath[1]}/_logstream"
  fish:  logstream completion fish > ~/.config/fish/completions/logstream.fish
Or for this shell only:  eval "$(logstream completion bash)"
"""


@click.command(epilog=EPILOG)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL."""
    from click.shell_completion import get_completion_class

    from logstream.cli.main import main

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "logstream", "_LOGSTREAM_COMPLETE").source())
