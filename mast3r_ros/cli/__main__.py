"""``python -m mast3r_ros.cli``."""

import sys

from mast3r_ros.cli import main

sys.exit(main())
