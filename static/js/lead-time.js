// Order form: mark the predicted ready time of the device type chosen, and say when the
// lab's 90 % bound falls on or after the needed-by date typed. The figures come from the
// server (data attributes); this only compares dates.
(function () {
  const box = document.getElementById("lead-times");
  const form = box && box.closest("form");
  if (!form) return;
  const warn = document.getElementById("lead-time-warning");
  function update() {
    const chosen = form.querySelector("input[name=device_type]:checked");
    const needed = form.querySelector("input[name=needed_by]");
    let late = false;
    box.querySelectorAll("li[data-device-type]").forEach(function (li) {
      const mine = chosen && li.dataset.deviceType === chosen.value;
      li.classList.toggle("chosen", mine);
      if (mine && needed && needed.value) {
        late = li.dataset.readyP90.slice(0, 10) >= needed.value;
      }
    });
    warn.hidden = !late;
  }
  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
})();
