"""`github_app_authorization`: someone revoked their authorization of the App on GitHub.

GitHub sends it to every App, unasked (a manifest cannot subscribe to it, docs/github-app.md).
Tarmac keeps no user token, so nothing of GitHub's needs revoking; what the authorization
still opened is the dashboard: every session of that GitHub user ends here, in the delivery's
transaction (on every replica: sessions are rows), and this process forgets the permissions it
had cached for them, so a new sign-in asks GitHub afresh. Other replicas' caches expire within
their minute; with no session left, nothing reads them meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gidgethub import routing, sansio

from bot.github.payloads import github_id
from bot.storage.dashboard_sessions import end_sessions_of_github_user

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

router = routing.Router()

NO_SENDER = "no sender in the payload"


@router.register("github_app_authorization", action="revoked")
async def on_authorization_revoked(event: sansio.Event, context: WebhookContext) -> None:
    sender = event.data.get("sender")
    user_id = github_id(sender.get("id")) if isinstance(sender, dict) else None
    if user_id is None:
        context.ignore(NO_SENDER)
        return
    login = sender.get("login") if isinstance(sender, dict) else None
    ended = await end_sessions_of_github_user(context.session, user_id)
    if isinstance(login, str):
        context.forget_access(login)
    sessions = "1 dashboard session" if ended == 1 else f"{ended} dashboard sessions"
    context.record(f"authorization of GitHub user {user_id} revoked; {sessions} ended")
