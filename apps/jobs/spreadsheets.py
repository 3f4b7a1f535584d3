"""Values written into CSV files a person opens in a spreadsheet: a cell starting like a formula is shown,
never run (CSV injection)."""

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"); a case
# list's values are whatever its author typed, so such a cell is written with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value):
    """`value` as a spreadsheet shows it without running it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
