"""The command line: ``abcore <command>`` (see ``abcore --help``)."""
