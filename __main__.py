import sys

from cardfit.cli import main

sys.exit(main())
