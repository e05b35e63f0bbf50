import sys

from runtime.scanner.cli import main

sys.exit(main())
