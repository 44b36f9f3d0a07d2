"""The Faust app, as the contract names it: `faust -A processor.app worker` (and `els process`) run this `app`.

Built from the environment at import, because that is how Faust's command line finds it; the wiring is in
processor/worker.py. Importing this module makes the process a worker, so it also chooses uvloop as the event
loop (unless `faust --loop` or FAUST_LOOP chose one) and tunes the garbage collector (processor/runtime.py).
Faust imports this module before it creates its event loop, so the choice takes effect.
"""

from common.config import Config
from processor.runtime import tune_gc, use_uvloop
from processor.worker import create_app

use_uvloop()
app = create_app(Config.from_env())
tune_gc()
