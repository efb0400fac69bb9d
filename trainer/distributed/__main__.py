from .torchrun import exit_rank, torchrun_main

exit_rank(torchrun_main())
