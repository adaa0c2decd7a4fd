"""The scheduler behind `digest run`: ingest, summaries, and the daily and weekly editions on the [schedule]
cron times, for months on end.

What is due comes from the database, not from the timer. On start, when a cron time comes and every
`check_minutes`, the daemon compares what should exist with the run log (`job_runs`) and the editions, and
runs what is missing: the latest ingest time without a run; a summarise after ingests that stored papers; the
latest daily and weekly edition not yet built and sent (only within `[email] send_by_hours` of its time; older
missed ones are recorded as skipped with the reason); and messages of the newest edition still waiting to be
sent. APScheduler is only the timer that wakes it, so a restart, a suspend or a clock change never loses a run
and never makes one twice (editions are unique per period and day; the outbox sends each message once).

One daemon acts per database: it holds the lease row and renews it with a heartbeat. Others wait as standbys
and take the lease over at most `lease_seconds` after the holder stopped renewing (also when it was killed).

Jobs run one at a time in a worker thread and stop at safe points when asked (SIGTERM/SIGINT, or the lease
lost): between sources, after each committed batch of summaries, after each message is sent and marked.

Modules: `schedule` (the cron times in the configured zone, the clock, source backoff), `daemon` (the lease, the
timer, the worker and the jobs) and `status` (what `digest status` reports). This package imports nothing at
load time, so `digest status` does not load the pipeline.
"""
