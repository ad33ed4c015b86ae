"""PyInstaller runtime hook, which ``make exe`` adds: an executable started with
idhelper.HELPER_FLAG is the id helper, not the researcher's program.

A runtime hook runs before the entry script. The helper could not start from the entry as a
``multiprocessing`` child does: by then the entry would have built the whole pool again.
"""

import sys

from jobsplit.idhelper import frozen_hook

frozen_hook(sys.argv)
