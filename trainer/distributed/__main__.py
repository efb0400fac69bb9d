import sys

from .torchrun import torchrun_main

sys.exit(torchrun_main())
