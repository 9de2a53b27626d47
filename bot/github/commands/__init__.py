"""Pull-request commands: parsing, who may run them, running them, the replies."""
