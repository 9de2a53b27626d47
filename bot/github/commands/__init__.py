"""Pull-request commands: parsing, running, replies."""
