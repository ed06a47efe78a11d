// Refreshes the fleet board in place (no page reload). Pauses while the tab is hidden and
// while a technician is typing a reason (an opened action or a focused form field), so a
// refresh never wipes what they are writing. Its requests say they are background ones
// (X-Pocprint-Background), so an open board never keeps an idle session alive.
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const interval = parseInt(live.dataset.interval || "2000", 10);
  function busy() {
    if (live.querySelector("details.act[open]")) return true;
    const active = document.activeElement;
    return Boolean(active && live.contains(active) && active.closest("form"));
  }
  async function refresh() {
    if (document.hidden || busy()) return;
    try {
      const response = await fetch(live.dataset.src, { headers: { Accept: "text/html", "X-Pocprint-Background": "1" }, credentials: "same-origin" });
      if (response.redirected || response.status === 401) { window.location.reload(); return; }
      if (response.ok && !busy()) {
        live.innerHTML = await response.text();
        live.dataset.updated = Date.now();
        delete live.dataset.offline;
      }
    } catch (err) { live.dataset.offline = "1"; }
  }
  setInterval(refresh, interval);
})();
