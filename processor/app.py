"""The Faust app, as the contract names it: `faust -A processor.app worker` (and `els process`) run this `app`.

Built from the environment at import, because that is how Faust's command line finds it; the wiring is in
processor/worker.py. Importing this module makes the process a worker, so it also chooses uvloop as the event
loop (unless `faust --loop` or FAUST_LOOP chose one), limits the C heaps and tunes the garbage collector
(processor/runtime.py). Faust imports this module before it creates its event loop and its consumer thread, so
the choices take effect.
"""

from pathlib import Path

from common.config import Config
from processor.runtime import limit_malloc_arenas, tune_gc, use_uvloop
from processor.worker import create_app

use_uvloop()
limit_malloc_arenas()
app = create_app(Config.from_env())


def _make_data_dir(sender, **kwargs) -> None:
    """Faust creates its data directory (ELS_DATA_DIR) without parents, and a fresh clone has no var/ yet.

    Runs when Faust's command line prepares a worker (`els process`, `faust -A processor.app worker`), not on
    a mere import."""
    Path(app.conf.datadir).mkdir(parents=True, exist_ok=True)


app.on_worker_init.connect(_make_data_dir)
tune_gc()
