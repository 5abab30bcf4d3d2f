import sys

from profila.cli import main

sys.exit(main())
