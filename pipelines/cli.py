"""What every pipeline shares: bad input becomes one line on stderr and exit status 2, and argument types that
refuse what would otherwise be quietly taken for something else."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from study.errors import BadInput


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the usage block) and exits with status 2."""

    def error(self, message: str):
        raise BadInput(self.prog, message)


def directory(text: str) -> str:
    """An argparse ``type`` for a directory the pipeline writes into: an empty path is refused, since Python would
    take ``Path("")`` for the working directory and write the stores there."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must be a directory path, got {text!r} (the working directory is '.')")
    return text


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    try:
        code = main(argv)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
