"""The post-incident review: what the automation did, what it did not do and why, who approved
what, and whether it worked.

Pure decisions over plain records (``model.py``): ``incidents.py`` (runs grouped into
incidents, stable ids), ``timeline.py`` (a run's and an incident's timeline), ``stats.py``
(effectiveness per rule, percentiles), ``report.py`` (the report as data), ``markdown.py``
(the report for a postmortem), ``outcomes.py`` and ``text.py`` (how things read). Around them:
``loader.py`` (reading the store), ``pages.py`` and ``templates/`` (the HTML pages),
``sessions.py`` (the pages' signed session cookie). The HTTP edge (``receiver.http.pages``,
``.login``, ``.report``) and the CLI (``remediator report``) serve them.
"""
