"""The Faust app, as the contract names it: `faust -A processor.app worker` (and `els process`) run this `app`.

Built from the environment at import, because that is how Faust's command line finds it; the wiring is in
processor/worker.py.
"""

from common.config import Config
from processor.worker import create_app

app = create_app(Config.from_env())
