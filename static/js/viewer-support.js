// Browsers without ES modules or import maps cannot run the viewer: say so instead of
// leaving "Loading…" on screen (the figures on the page do not need it).
(function () {
  var ok = "noModule" in HTMLScriptElement.prototype &&
    HTMLScriptElement.supports && HTMLScriptElement.supports("importmap");
  if (ok) return;
  var box = document.getElementById("viewer");
  if (!box) return;
  box.setAttribute("data-error", "browser");
  box.querySelector(".status").textContent = "This browser is too old for the 3D view. " +
    "The figures on this page are complete without it; the meshes can be downloaded below.";
})();
