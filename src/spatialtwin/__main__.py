import sys

from spatialtwin.cli import main

sys.exit(main())
