// Reloads a page while a step on it is still running (marked with data-refresh="seconds").
(function () {
  const marker = document.querySelector("[data-refresh]");
  if (!marker) return;
  const seconds = parseInt(marker.dataset.refresh || "3", 10);
  setTimeout(function () { if (!document.querySelector("form input:focus")) window.location.reload(); }, seconds * 1000);
})();
