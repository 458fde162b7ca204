"""``python -m fnlabel``: the same as the ``fnlabel`` command."""

import sys

from fnlabel.cli import main

if __name__ == "__main__":
    sys.exit(main())
