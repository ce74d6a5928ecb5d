"""What each subcommand does, one module per command or small group of commands.

A command is a function ``run_x(args, ctx) -> int`` (the exit code), named
by the parser (`pieceworks.cli.parser`) as ``"module:function"`` and
imported only when it runs.
"""
