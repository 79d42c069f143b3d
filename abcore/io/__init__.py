"""Files in and out: ``csv_export`` (streamed CSV), ``configs`` (experiment configs as JSON),
``event_import`` with ``event_records`` (offline event logs into the store)."""
