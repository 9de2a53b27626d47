"""Notifications out: Slack incoming webhooks and generic outgoing webhooks, delivered from
the outbox (bot/app/notifications.py plans them; the outbox worker runs `Notifier.deliver`)."""
