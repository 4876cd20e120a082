// The review page's only script: shortcuts, the heat-map slider, and decisions sent with fetch.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const select = document.querySelector("select[data-autosubmit]");
  if (select) select.addEventListener("change", () => select.form.submit());

  const item = document.getElementById("item");
  if (!item) {
    document.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && document.activeElement === document.body) window.location = "/next";
    });
    return;
  }
  const heat = document.getElementById("heat");
  const opacity = document.getElementById("opacity");
  const status = document.getElementById("status");
  const defect = document.getElementById("defect");
  let busy = false;

  opacity.addEventListener("input", () => { heat.style.opacity = opacity.value / 100; });
  heat.style.opacity = opacity.value / 100;

  async function decide(label) {
    if (busy) return;
    busy = true;
    status.className = "";
    status.textContent = "saving…";
    try {
      const response = await fetch(`/items/${item.dataset.frame}/decision`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": item.dataset.csrf },
        body: JSON.stringify({ label, defect: label === "anomaly" ? defect.value : "" }),
        credentials: "same-origin",
      });
      const result = await response.json();
      if (!response.ok) throw new Error(result.error || `the page answered ${response.status}`);
      status.textContent = result.saved ? `saved: ${label}` : "skipped";
      window.location = result.next;
    } catch (error) {
      status.className = "failed";
      status.textContent = `NOT SAVED: ${error.message}`;
      busy = false;
    }
  }

  document.querySelectorAll("button[data-label]").forEach((button) => {
    button.addEventListener("click", () => decide(button.dataset.label));
  });
  document.addEventListener("keydown", (event) => {
    // Letters decide anywhere but in a text field (the opacity slider keeps only its arrow keys).
    if (event.ctrlKey || event.metaKey || event.altKey || event.target.matches("input:not([type=range]), textarea")) return;
    const key = event.key.toLowerCase();
    if (key === "a") decide("anomaly");
    else if (key === "n") decide("normal");
    else if (key === "s") decide("skip");
    else if (key === "escape") window.location = "/";
    else if (/^[1-9]$/.test(key) && defect.options.length > Number(key)) defect.selectedIndex = Number(key);
  });
});
