"""The client commands of `tarmac` (status, deploy, rollback, freeze, unfreeze, changes): they
talk to a Tarmac server over HTTP only, as a laptop or a CI step does, and never open its
database (docs/cli.md)."""
