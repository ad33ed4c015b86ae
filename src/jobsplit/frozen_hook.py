"""PyInstaller runtime hook, which ``make exe`` adds: an executable started with
idhelper.HELPER_FLAG is the id helper, and one started as ``python -c``/``python -m`` (as
libraries start their helper processes from ``sys.executable``) acts as Python; else it is the
researcher's program.

A runtime hook runs before the entry script. The helpers could not start from the entry as a
``multiprocessing`` child does: by then the entry would have built the whole pool again.

A Ctrl-C while this hook imports jobsplit's first modules (a tenth of a second after the
program unpacked itself, on a busy host) was a traceback and PyInstaller's "Failed to execute
script 'frozen_hook'", exit status 1. It is noted meanwhile, and then is the sentence and exit
status of a Ctrl-C while the entry loads. Noted, not raised: a one-file program gets each Ctrl-C
twice (from the terminal, and forwarded by its bootloader), and the second came while the
sentence's own module loaded.
"""

import signal
import sys

_pressed: list[int] = []
_guarded = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not where it is ignored (in a script's background)
if _guarded:
    signal.signal(signal.SIGINT, lambda signum, frame: _pressed.append(signum))
from jobsplit.errors import exit_interrupted  # noqa: E402 - after the handler: these imports are what it guards
from jobsplit.idhelper import frozen_hook  # noqa: E402
from jobsplit.interpreter import act_as_python  # noqa: E402

if _guarded:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # first: a Ctrl-C from here on raises, none is lost
if _pressed:
    exit_interrupted()
act_as_python(sys.argv)
frozen_hook(sys.argv)
