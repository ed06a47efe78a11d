// Review page: filter scenarios, show the chosen band, and say when a justification is
// required. The server enforces the same rule; this only saves the reviewer a round trip.
(function () {
  const form = document.getElementById("review");
  if (!form) return;
  const filter = document.getElementById("scenario-filter");
  const summary = document.getElementById("selected-band");
  const needed = document.getElementById("justification-needed");
  const justification = form.querySelector("textarea[name=justification]");
  const labels = { usually: "Usually appropriate (7–9)", may: "May be appropriate (4–6)",
                   usually_not: "Usually not appropriate (1–3)", none: "Not in the catalog" };

  function chosen(name) {
    const input = form.querySelector(`input[name=${name}]:checked`);
    return input ? input : null;
  }

  function update() {
    const scenario = chosen("scenario");
    const decision = chosen("decision");
    let band = null;
    if (scenario) {
      const row = scenario.closest(".scenario");
      band = row.dataset.band;
      const rating = row.dataset.rating;
      summary.textContent = (rating ? `Rating ${rating}: ` : "") + labels[band];
      summary.className = `band-summary band-${band}`;
    }
    const mustJustify = decision && (decision.value !== "approve" || (band && band !== "usually"));
    needed.hidden = !mustJustify;
    justification.required = Boolean(mustJustify);
  }

  if (filter) {
    filter.addEventListener("input", () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      form.querySelectorAll(".scenario").forEach((row) => {
        const text = row.textContent.toLowerCase();
        row.hidden = row.dataset.band !== "none" && !words.every((w) => text.includes(w));
      });
    });
  }
  form.addEventListener("change", update);
  update();
})();
