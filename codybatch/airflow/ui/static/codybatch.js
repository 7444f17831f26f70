// Cody Batch pages: live job refresh, confirmations, links into the Airflow UI. No build step.
(function () {
  "use strict";
  const POLL_MS = 3000;

  function poll(box) {
    const url = box.getAttribute("data-poll");
    if (!url) return;
    const tick = () => {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
        .then((html) => {
          if (box.querySelector("form[data-armed='1']")) return setTimeout(tick, POLL_MS);
          box.innerHTML = html;
          wire(box);
          const bar = box.querySelector("[data-finished]");
          if (bar && bar.getAttribute("data-finished") === "true") {
            box.removeAttribute("data-poll");
          } else {
            setTimeout(tick, POLL_MS);
          }
        })
        .catch(() => setTimeout(tick, POLL_MS * 3));
    };
    setTimeout(tick, POLL_MS);
  }

  // Inside the Airflow UI's iframe, ask the UI's router to navigate instead of nesting it.
  function airflowLink(event) {
    try {
      const top = window.parent;
      if (top === window || !top.history) return;
      event.preventDefault();
      top.history.pushState({}, "", this.getAttribute("href"));
      top.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
    } catch (e) { /* cross-origin or sandboxed: follow the link normally */ }
  }

  function wire(root) {
    // Two clicks instead of window.confirm(): the UI's iframe sandbox blocks modal dialogs.
    root.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (e) => {
        const button = form.querySelector("button");
        if (form.dataset.armed === "1" || !button) return;
        e.preventDefault();
        form.dataset.armed = "1";
        button.textContent = form.getAttribute("data-confirm");
      });
    });
    root.querySelectorAll("a[data-airflow-link]").forEach((a) => a.addEventListener("click", airflowLink));
    // No inline handlers: the Content-Security-Policy allows only this script.
    root.querySelectorAll("select[data-autosubmit]").forEach((s) => s.addEventListener("change", () => s.form.submit()));
    // The New job form shows only the chosen job type's variables.
    root.querySelectorAll("select[data-job-type-select]").forEach((select) => {
      const show = () => select.form.querySelectorAll("fieldset[data-job-type]").forEach((f) => {
        f.hidden = f.getAttribute("data-job-type") !== select.value;
      });
      select.addEventListener("change", show);
      show();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire(document);
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
