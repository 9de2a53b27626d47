"""The projects file and its sync into the database."""
