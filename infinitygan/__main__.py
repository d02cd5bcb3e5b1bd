import sys

from infinitygan.cli import main

sys.exit(main())
