import sys

from inference.server import main

sys.exit(main())
