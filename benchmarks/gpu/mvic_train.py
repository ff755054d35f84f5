"""`python -m mvic train ...` for the benchmark, without mvic/cli.py's dataset-builder imports.

    python benchmarks/gpu/mvic_train.py train --dataset DIR --flux F ... (the same arguments)

Builds the parser from mvic.training.cli.add_commands and calls mvic.training.cli.run, i.e. the
same code path as `python -m mvic train`. Works around a NameError in mvic/training/cli.py at
commit 96f462f: `_train` calls `find_environment`, which is imported only inside `run`.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mvic.training import cli  # noqa: E402
from mvic.training.environment import find_environment  # noqa: E402

if not hasattr(cli, "find_environment"):
    cli.find_environment = find_environment

parser = argparse.ArgumentParser(prog="mvic_train")
cli.add_commands(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args()
try:
    sys.exit(cli.run(args))
except (ValueError, OSError, RuntimeError) as exc:  # as mvic/cli.py main() does
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
