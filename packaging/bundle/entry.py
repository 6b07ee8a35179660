"""The bundle's executable: the same entry point as the wheel's `cardfit` script (with no
command it opens the app)."""

import sys

from cardfit.cli import main

if __name__ == "__main__":
    sys.exit(main())
