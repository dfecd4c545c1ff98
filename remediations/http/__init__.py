"""HTTP remediations and the JSON poster that notifications share.

- ``post``: ``post_json``: one POST with timeouts, retries on connection errors, 429 and 5xx
  (honouring Retry-After up to a cap), never on other 4xx, never following redirects
- ``answer``: ``read_start``: the start of an answer's body, bounded, the body so far when it
  breaks off
- ``endpoints``: ``Endpoint`` and ``HttpEndpoints`` (the allow-list from configuration: a rule
  names an endpoint, never a URL) and the ``http.call`` action

Nothing is imported here, so importing the package does not load aiohttp.
"""
