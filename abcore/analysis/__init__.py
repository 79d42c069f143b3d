"""Reading an experiment's results: ``analyze()`` = plan -> run -> test -> judge.

* ``pipeline`` — :func:`~abcore.analysis.pipeline.analyze`; ``execution`` runs the analysis SQL on an engine;
* ``sql`` — the analysis SQL built from metric definitions, one module per CTE family, rendered per dialect;
* ``engines`` — where the SQL runs: the store (SQLite/PostgreSQL), DuckDB, Spark; source configs;
* ``compare`` — the test of each metric kind per treatment (over :mod:`abcore.stats`);
* ``verdict`` — the only judge: outcome per metric in its direction and the verdict (status-aware);
* ``health`` (sample ratio, sizes, duration), ``daily`` (series by day), ``segments`` (breakdown by attribute);
* ``results`` — the frozen result dataclasses (``Results.to_frame()``, ``Results.to_dict()``);
* ``overview`` (simple counts for lists and cards) and ``metric_counts`` (the HTTP API's per-metric counts and the
  results page's histogram, on the analysis SQL).
"""
