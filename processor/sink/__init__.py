"""The Datadog sink: the outbox -> merged windows -> Datadog, one idea per module.

- merge.py: the latest partial of every processor partition, per group and window (the `sink` table), and its
  retention;
- render.py: merged windows -> Datadog series, log items -> Datadog logs (tag rules, base tags);
- delivery.py: Datadog's limits, the retry decision table, what Datadog would drop (pure);
- client.py: the HTTP calls (datadog-api-client), or the dry-run file;
- sender.py: batches, retries, splits, dead letters;
- buffer.py: what the worker holds until a flush;
- sink.py: the public API (merge -> render -> send) the worker and `els replay` use;
- agent.py: the Faust wiring (agent, flush timer, table, acks).
"""
