import sys

from modeltel.cli import main

sys.exit(main())
