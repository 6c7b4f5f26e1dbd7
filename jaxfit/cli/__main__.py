"""python -m jaxfit.cli"""

import sys

from . import main

sys.exit(main())
