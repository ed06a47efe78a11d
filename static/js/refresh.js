// Refreshes a page while a step on it is still running (marked with data-refresh="seconds"),
// but never while someone is typing into a form on it. The page is fetched as a background
// request (X-Pocprint-Background), so it never keeps an idle session alive, and its main
// content is swapped in place; a timed-out session reloads the page (to the sign-in).
(function () {
  let marker = document.querySelector("[data-refresh]");
  if (!marker) return;
  const seconds = parseInt(marker.dataset.refresh || "3", 10);
  async function tick() {
    const typing = document.activeElement && document.activeElement.closest("form");
    if (typing || document.hidden) { setTimeout(tick, seconds * 1000); return; }
    try {
      const response = await fetch(window.location.href, {
        headers: { Accept: "text/html", "X-Pocprint-Background": "1" },
        credentials: "same-origin",
      });
      if (response.redirected || response.status === 401 || response.status === 403) {
        window.location.reload();
        return;
      }
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("main");
        const active = document.activeElement && document.activeElement.closest("form");
        if (fresh && !active) {
          document.querySelector("main").replaceWith(document.adoptNode(fresh));
          document.body.dataset.refreshed = String(Date.now());
        }
      }
    } catch (err) { /* offline for a moment: try again at the next tick */ }
    marker = document.querySelector("[data-refresh]");
    if (marker) setTimeout(tick, seconds * 1000);
  }
  setTimeout(tick, seconds * 1000);
})();
