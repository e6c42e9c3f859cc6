import sys

from ioda.cli import main

sys.exit(main())
