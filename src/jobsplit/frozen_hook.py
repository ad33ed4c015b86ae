"""PyInstaller runtime hook, which ``make exe`` adds: an executable started with
idhelper.HELPER_FLAG is the id helper, and one started as ``python -c``/``python -m`` (as
libraries start their helper processes from ``sys.executable``) acts as Python; else it is the
researcher's program.

A runtime hook runs before the entry script. The helpers could not start from the entry as a
``multiprocessing`` child does: by then the entry would have built the whole pool again.
"""

import sys

from jobsplit.idhelper import frozen_hook
from jobsplit.interpreter import act_as_python

act_as_python(sys.argv)
frozen_hook(sys.argv)
