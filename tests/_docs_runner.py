"""
Runs the Python blocks of one documentation page in one namespace, one block at a time, as a reader pasting them
into one Python session would (driven by ``tests/test_docs.py`` over stdin: one JSON object per block).
After each block it prints a marker line with the outcome (and the traceback of a failure).
"""

import json
import sys
import traceback

MARKER = "@@docs-block-done@@"


def main() -> None:
    namespace: dict = {"__name__": "__main__"}
    for line in sys.stdin:
        block = json.loads(line)
        error = None
        try:
            exec(compile(block["code"], block["name"], "exec"), namespace)
        except BaseException:
            error = traceback.format_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        print(MARKER + json.dumps({"error": error}), flush=True)


if __name__ == "__main__":
    main()
