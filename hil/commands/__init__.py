"""One module per ``medtwin`` subcommand; the table is :data:`hil.cli.COMMANDS`."""
