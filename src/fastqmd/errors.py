"""User-facing errors: anything raised as `InputError` reaches the CLI as one line and exit code 2."""


class InputError(ValueError):
    """Bad user input (config, structure, file, path). The message is shown to the user as is."""
