// Tarmac's dashboard: live updates, the confirm dialog, force's reason. Every page works
// without it.
"use strict";

(function () {
  const body = document.body;
  const mark = body.dataset.mark;
  if (mark === undefined) return;

  // --- live updates: an event per change of the mark; the page fetches itself again and
  // swaps its live region. Nothing is lost on reconnect: the stream starts from the page's
  // mark, EventSource resends the last id, and a stream on another mark starts with a change.
  let refreshing = null;
  let again = false;
  let signedOut = false; // the stream said the session ended: nothing more is fetched

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = (async () => {
      do {
        again = false;
        const answer = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
        if (signedOut || answer.redirected || !answer.ok) return;
        const html = await answer.text();
        const fresh = new DOMParser().parseFromString(html, "text/html");
        swap(fresh);
      } while (again);
    })();
    try { await refreshing; } finally { refreshing = null; }
  }

  function swap(fresh) {
    const now = document.getElementById("live");
    const next = fresh.getElementById("live");
    if (!now || !next) return;
    const focused = document.activeElement && document.activeElement.id;
    const openDialog = document.querySelector(".confirm.open");
    const typed = {};
    now.querySelectorAll("input[type=text]").forEach((input) => { if (input.id) typed[input.id] = input.value; });
    now.replaceWith(document.adoptNode(next));
    Object.entries(typed).forEach(([id, value]) => {
      const input = document.getElementById(id);
      if (input) input.value = value;
    });
    if (openDialog) {
      const again = document.getElementById(openDialog.id);
      if (again) again.classList.add("open", "modal");
    }
    if (focused) {
      const target = document.getElementById(focused);
      if (target) target.focus();
    }
    body.dataset.refreshed = String(Number(body.dataset.refreshed || "0") + 1);
  }

  const state = document.getElementById("live-state");
  const source = new EventSource("/dashboard/events?since=" + encodeURIComponent(mark));
  let opened = false;
  source.addEventListener("open", () => {
    if (state) state.textContent = "live";
    // A reconnect: whatever changed while the stream was down is fetched now.
    if (opened) refresh();
    opened = true;
  });
  source.addEventListener("error", () => {
    if (state && !signedOut) state.textContent = "reconnecting…";
  });
  source.addEventListener("change", () => { if (!signedOut) refresh(); });

  // --- the session ended (signed out in another tab, expired, its token revoked): the
  // stream says so and ends; the page stops updating, keeps what it shows and says why.
  source.addEventListener("signed-out", () => {
    signedOut = true;
    source.close();
    if (state) state.textContent = "signed out";
    if (document.getElementById("signed-out")) return;
    const notice = document.createElement("p");
    notice.className = "notice error";
    notice.id = "signed-out";
    notice.setAttribute("role", "alert");
    const link = document.createElement("a");
    link.href = "/sign-in";
    link.textContent = "sign in again";
    notice.append("Signed out: ", link);
    const main = document.querySelector("main");
    if (main) main.prepend(notice);
  });

  // --- the confirm dialog: the link's #target opens it without JavaScript; with it, a modal
  // that Escape or "Keep what runs" closes, focus moved in and back.
  let opener = null;
  document.addEventListener("click", (event) => {
    const open = event.target.closest("[data-dialog]");
    if (open) {
      event.preventDefault();
      const dialog = document.getElementById(open.dataset.dialog);
      if (!dialog) return;
      opener = open.id;
      dialog.classList.add("open", "modal");
      const first = dialog.querySelector("input:not([type=hidden]), button, a[href]");
      if (first) first.focus();
      return;
    }
    const close = event.target.closest("[data-close]");
    if (close) {
      event.preventDefault();
      closeDialog(close.dataset.close);
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      const dialog = document.querySelector(".confirm.open");
      if (dialog) closeDialog(dialog.id);
    }
    // Links are buttons here: Space opens the dialog as Enter does.
    if (event.key === " " && event.target.matches && event.target.matches("a.button")) {
      event.preventDefault();
      event.target.click();
    }
  });
  // --- force needs a reason: checking Force makes the form's reason required (the server
  // refuses a forced deploy without one either way).
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!box.matches || !box.matches("input[type=checkbox][data-requires]")) return;
    const reason = document.getElementById(box.dataset.requires);
    if (reason) reason.required = box.checked;
  });
  function closeDialog(id) {
    const dialog = document.getElementById(id);
    if (dialog) dialog.classList.remove("open", "modal");
    const back = opener && document.getElementById(opener);
    if (back) back.focus();
  }
})();
