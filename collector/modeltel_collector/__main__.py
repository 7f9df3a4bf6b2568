import sys

from modeltel_collector.cli import main

sys.exit(main())
