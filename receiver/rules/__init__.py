"""Remediation rules: from YAML files to a matchable, validated rule set.

``rules/README.md`` is the reference of the file format. The package is layered so that the
engine can use compiled rules without pulling in file reading:

- ``errors``: ``RuleError(file, line, message)`` and ``RuleSetError`` (all errors at once).
- ``schema``: the pydantic specs, what a rule file may say.
- ``yaml_lines``: YAML parsing that keeps the line of every key and item.
- ``model``: the compiled ``Rule``, ``Step``, ``Repeated``, ``LiveCondition`` and ``RuleSet``
  (pure data, matching).
- ``steps``: compiling a rule's step lists (params, approval, ``when`` conditions).
- ``compile``: file name -> text into a ``RuleSet``, or every error with its file and line.
- ``matcher_lint``: the lint warnings of a matcher that are the service's own (pure).
- ``loader``: the only module that reads files: ``load_rules``, ``lint``, ``RuleHolder`` (the set
  in force, reloaded under a lock) and ``RuleWatcher`` (reload when the files change).

Everything but ``loader`` is pure. Nothing is re-exported here: import from the module.
"""
