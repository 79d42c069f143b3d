"""The one store (SQLite by default, PostgreSQL in production): ``tables`` (every SQLModel table), ``db``
(``make_engine``, ``init_db`` and the migrations under ``migrations/``) and ``values`` (what a column or a JSON
field can hold: numbers that are numbers, JSON without NaN or lone surrogates)."""
