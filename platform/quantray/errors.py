"""The one exception type that means "the user's input is wrong".

The CLI turns it into a single line on stderr and exit code 2, with no traceback.
Its message must name the file, row, column or key at fault.
"""


class BadInput(ValueError):
    """Malformed user input: a source, a config file, a key, an argument."""
