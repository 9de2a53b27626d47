"""Cross-cutting pieces every layer may use: clock, errors, log context, metrics, pages,
files."""
