"""The database: engine, models, migrations, queries, the outbox."""
