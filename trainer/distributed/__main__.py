import sys

from .rank import torchrun_main

sys.exit(torchrun_main())
