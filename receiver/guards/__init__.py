"""Guards: may this run act on this target now?

``policy`` is the pure part (the declared guard list, keys, arithmetic); ``redis_guards`` runs
it atomically in Redis. Import from the module you need: the pure core imports only ``policy``.
"""
