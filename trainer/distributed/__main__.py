from .rank import exit_rank
from .torchrun import torchrun_main

exit_rank(torchrun_main())
