"""The Faust app, as the contract names it: `faust -A processor.app worker` (and `els process`) run this `app`.

Built from the environment at import, because that is how Faust's command line finds it; the wiring is in
processor/worker.py. Importing this module makes the process a worker, so it also chooses uvloop as the event
loop (unless `faust --loop` or FAUST_LOOP chose one), limits the C heaps and tunes the garbage collector
(processor/runtime.py). Faust imports this module before it creates its event loop and its consumer thread, so
the choices take effect.
"""

import asyncio
import sys
from pathlib import Path

from common import logs
from common.config import Config
from processor.runtime import limit_malloc_arenas, tune_gc, use_uvloop
from processor.worker import create_app

use_uvloop()
limit_malloc_arenas()
CONFIG = Config.from_env()
app = create_app(CONFIG)
# while Kafka is down its clients retry every 100 ms, each retry an ERROR line: one per message and 10 s instead
logs.throttle_loggers(("aiokafka", "kafka", "faust", "mode"))


def _make_data_dir(sender, **kwargs) -> None:
    """Faust creates its data directory (ELS_DATA_DIR) without parents, and a fresh clone has no var/ yet.

    Runs when Faust's command line prepares a worker (`els process`, `faust -A processor.app worker`), not on
    a mere import."""
    Path(app.conf.datadir).mkdir(parents=True, exist_ok=True)


def _make_topics(sender, **kwargs) -> None:
    """Every topic of the pipeline exists with ELS_PARTITIONS before Faust subscribes or declares one (common/
    topics.py). One that exists with another count, or settings the brokers refuse, stop the worker with exit 2
    and the fix; no broker at all with exit 1 (retryable: a supervisor starts it again). Faust's worker runs this
    inside its starting event loop, where nothing else runs yet: the topics are made on a thread of its own."""
    from concurrent.futures import ThreadPoolExecutor

    from common.config import ConfigError
    from common.kafka_check import KafkaUnreachable
    from common.topics import TopicMismatch, ensure_pipeline_topics

    with ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, ensure_pipeline_topics(CONFIG)).result()
        except (TopicMismatch, ConfigError, KafkaUnreachable) as exc:  # ConfigError: KafkaRefused, setting named
            print(f"els process: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1 if isinstance(exc, KafkaUnreachable) else 2) from None


app.on_worker_init.connect(_make_data_dir)
app.on_worker_init.connect(_make_topics)
tune_gc()
