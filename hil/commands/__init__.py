"""One module per ``medtwin`` subcommand; the table is :data:`medtwin.hil.cli.COMMANDS`."""
