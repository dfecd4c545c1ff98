"""Rule tests with a clock: ``remediator test FILE...`` (in the spirit of
``promtool test rules``; rules/README.md "Testing rules" has the file format).

A test file names rule files and holds tests. Each test plays a timeline of Alertmanager
notifications (firing, repeats, HA duplicates, resolved, re-fires) and operator actions (pause,
resume, approve, reject, live-state fixtures) at offsets on a simulated clock, through the
real intake, pipeline, guards (their Lua on Redis) and store (PostgreSQL), and checks the runs,
steps, refusals and approvals it expects at given offsets. No action is executed: the step
runner's simulation mode records each step as it would run.

The rooms, in the order a run uses them:

- ``spec``, ``fields`` (pure): the pydantic schema of a test file, and its field types.
- ``parse`` (pure): text -> spec, every problem at its ``file:line`` (``rules.yaml_lines``).
- ``files``: reads a test file and the rule files it names, compiles them, the settings.
- ``world``: the PostgreSQL and Redis a run plays on (embedded, or given), a database cloned
  from a migrated template and a Redis key prefix per test.
- ``sim``: the service's parts wired for one test on one ``SimClock``, and ``FixtureFacts``.
- ``notifications`` (pure): what Alertmanager sends for each kind of timeline entry.
- ``player``: the timeline, played in time order, work processed when it falls due.
- ``expect``: what the store holds, against what the test expects; ``Failure`` (file:line).
- ``run``: load everything, start the servers once, play every test, report.
"""
