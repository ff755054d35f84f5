"""Functions longer than the guide allows (60 lines, `def` to last line, decorators not counted).

python tools/function_lengths.py mvic nodes      # exits 1 when any is found
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMIT = 60


def long_functions(folders: list[str], limit: int = LIMIT) -> list[str]:
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > limit:
                        found.append(f"{path}:{node.lineno} {node.name} {length} lines")
    return found


if __name__ == "__main__":
    folders = sys.argv[1:] or ["mvic", "nodes"]
    found = long_functions(folders)
    print(f"functions over {LIMIT} lines in {', '.join(folders)}: {len(found)}")
    print("\n".join(found))
    sys.exit(1 if found else 0)
