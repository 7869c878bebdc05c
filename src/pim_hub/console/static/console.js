// pim-hub console: the little behaviour the pages need, with no inline script (the
// Content-Security-Policy forbids it). Data only ever enters the page as text.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// A confirmation before a form that changes something (data-confirm="question").
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // Progress while it runs: the button says what is happening and cannot be pressed twice.
  const busy = form.dataset.busy || (event.submitter && event.submitter.dataset.busy);
  if (busy && event.submitter) {
    event.submitter.textContent = busy;
    setTimeout(() => { event.submitter.disabled = true; }, 0);
  }
});

// "Select all" checkboxes of a dead-letter group.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!box.matches("[data-select-all]")) return;
  box.closest("table").querySelectorAll('input[name="job_id"]').forEach((b) => { b.checked = box.checked; });
});

document.addEventListener("click", (event) => {
  const back = event.target.closest("[data-back]");
  if (back && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});

// Live regions: data-refresh replaces an element's HTML with a server-rendered fragment
// (escaped by the templates); data-poll updates a run's progress from its JSON.
function refresh(el) {
  fetch(el.dataset.refresh, { headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" })
    .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
    .then((html) => { el.innerHTML = html; el.classList.remove("stale"); })
    .catch(() => el.classList.add("stale"));
}

function poll(el) {
  fetch(el.dataset.poll, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then((run) => {
      el.querySelector(".run-state").textContent = run.state;
      const bar = el.querySelector(".run-progress");
      bar.max = Math.max(run.total, 1);
      bar.value = run.done;
      el.querySelector(".run-counts").textContent = `${run.done} / ${run.total}`;
      el.querySelector(".run-lines").textContent = (run.lines || []).join("\n") + (run.error || "");
      if (run.state === "running") setTimeout(() => poll(el), Number(el.dataset.every || 1000));
    })
    .catch(() => setTimeout(() => poll(el), 3000));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach((el) => {
    setInterval(() => refresh(el), Number(el.dataset.every || 5000));
  });
  document.querySelectorAll("[data-poll]").forEach((el) => poll(el));
});
