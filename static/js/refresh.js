// Reloads a page while a step on it is still running (marked with data-refresh="seconds"),
// but never while someone is typing into a form on it.
(function () {
  const marker = document.querySelector("[data-refresh]");
  if (!marker) return;
  const seconds = parseInt(marker.dataset.refresh || "3", 10);
  function tick() {
    const typing = document.activeElement && document.activeElement.closest("form");
    if (typing || document.hidden) { setTimeout(tick, seconds * 1000); return; }
    window.location.reload();
  }
  setTimeout(tick, seconds * 1000);
})();
