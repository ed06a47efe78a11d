// Refreshes the fleet board in place (no page reload). Pauses while the tab is hidden.
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const interval = parseInt(live.dataset.interval || "2000", 10);
  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(live.dataset.src, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (response.redirected || response.status === 401) { window.location.reload(); return; }
      if (response.ok) { live.innerHTML = await response.text(); live.dataset.updated = Date.now(); }
    } catch (err) { live.dataset.offline = "1"; }
  }
  setInterval(refresh, interval);
})();
