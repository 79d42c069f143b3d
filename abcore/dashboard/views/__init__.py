"""Pure page logic of the dashboard (no streamlit): ``create_form``, ``edit_form``, ``metric_forms``,
``sample_size``, ``experiment_list``, ``forms`` (statuses, formatting, results table), ``html``, charts."""
