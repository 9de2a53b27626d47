"""The dashboard: server-rendered pages in the same app (api/dashboard/pages.py), the forms'
actions (actions.py), sign-in and sessions (sessions.py), live updates (live.py)."""
