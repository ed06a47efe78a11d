// Read-only fields marked data-select-on-click select their whole text when tapped, so a hash
// can be copied in one go (instead of an inline onclick, which the page's CSP forbids).
document.addEventListener("click", function (event) {
  const field = event.target.closest("[data-select-on-click]");
  if (field && typeof field.select === "function") field.select();
});
