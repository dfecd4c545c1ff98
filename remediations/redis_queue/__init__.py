"""Redis queue remediations: putting dead letters back on their work queue, without loss.

- ``queues``: ``QueueSpec`` (one configured queue: its layout and keys) and ``RedisQueues``,
  the client of one named Redis connection with the queues configured under it
- ``requeue``: ``redis.requeue_dead_letters``
- ``celery_move``: a celery queue's move, to kombu's priority lists
- ``rq_skips``: the words for the failed RQ jobs a requeue leaves, and why
- ``lua/``: the scripts that move messages, one file each, loaded by name

Layouts (how each is configured: the README's "Redis queues"): ``list`` (a plain dead-letter
list and work list), ``celery`` (Celery's Redis broker: kombu LPUSHes to the queue's list of
the message's priority step and BRPOPs from them), ``rq`` (RQ: failed job ids in the
``rq:failed:<queue>`` sorted set, the queue in the ``rq:queue:<queue>`` list; a job of another
origin is left), ``stream`` (a consumer group's entries idle past a threshold are re-added to
the stream).

Nothing is imported here, so importing the package does not load the Redis client.
"""
