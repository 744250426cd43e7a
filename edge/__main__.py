import sys

from edge.ops.cli import main

sys.exit(main())
