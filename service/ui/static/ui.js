// qbank web UI: progressive enhancements. Every page works as plain HTML forms; this file
// signs in through the JSON API, edits sh_p inline, and guards against double submits.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function postJson(url, body, headers) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: Object.assign({ "Content-Type": "application/json", Accept: "application/json" }, headers || {}),
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { ok: response.ok, status: response.status, data: data };
}

function detailOf(result) {
  const detail = result.data && result.data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: name the field of each.
    return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  return `the service answered ${result.status}`;
}

// Keep the API's token in the httpOnly session cookie, then go where the page asked.
async function startSession(accessToken, next, errorBox) {
  const result = await postJson("/session", { access_token: accessToken, next: next || null });
  if (!result.ok) { errorBox.textContent = `Sign-in failed: ${detailOf(result)}.`; return; }
  window.location.assign(result.data.location);
}

function setupSignIn() {
  const form = document.getElementById("signin-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const errorBox = document.getElementById("signin-error");
      errorBox.textContent = "";
      const body = { username: form.username.value, password: form.password.value };
      if (form.tenant_id.value.trim()) body.tenant_id = form.tenant_id.value.trim();
      if (!body.username || !body.password) { errorBox.textContent = "Enter your username and password."; return; }
      const result = await postJson("/v1/auth/login", body);
      if (!result.ok) { errorBox.textContent = `Sign-in failed: ${detailOf(result)}.`; return; }
      await startSession(result.data.access_token, form.dataset.next, errorBox);
    });
  }
  const dev = document.getElementById("dev-signin-form");
  if (dev) {
    dev.addEventListener("submit", async (event) => {
      event.preventDefault();
      const errorBox = document.getElementById("dev-signin-error");
      errorBox.textContent = "";
      const role = event.submitter ? event.submitter.value : "student";
      const result = await postJson("/v1/auth/mock-login", { user_id: dev.user_id.value.trim(), roles: [role] });
      if (!result.ok) { errorBox.textContent = `Sign-in failed: ${detailOf(result)}.`; return; }
      await startSession(result.data.access_token, dev.dataset.next, errorBox);
    });
  }
}

function setupShEditor() {
  const dialog = document.getElementById("sh-dialog");
  if (!dialog) return;
  const form = document.getElementById("sh-form");
  const input = document.getElementById("sh-input");
  const errorBox = document.getElementById("sh-error");
  let target = null;
  document.querySelectorAll("[data-edit-sh]").forEach((button) => {
    button.addEventListener("click", () => {
      target = button;
      document.getElementById("sh-dialog-item").textContent =
        `Item ${button.dataset.ref}, version ${button.dataset.version}: sh_p is now ${Number(button.dataset.sh).toFixed(3)}.`;
      input.value = button.dataset.sh;
      errorBox.textContent = "";
      dialog.showModal();
      input.select();
    });
  });
  document.getElementById("sh-cancel").addEventListener("click", () => { dialog.close(); });
  dialog.addEventListener("close", () => { if (target) target.focus(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.textContent = "";
    // The service validates (0 <= sh_p <= 1); an empty or non-numeric field goes as null.
    const value = input.value.trim() === "" || Number.isNaN(Number(input.value)) ? null : Number(input.value);
    const result = await postJson("/admin/exposure/set", {
      question_id: Number(target.dataset.questionId), version: Number(target.dataset.version), sh_p: value,
    }, { "X-CSRF-Token": csrfToken() });
    if (!result.ok) { errorBox.textContent = `Not saved: ${detailOf(result)}.`; return; }
    // K is stored once, in bundle revisions: the change is a new revision, unvalidated until a
    // validation run passes; the value in force stays until that revision is promoted.
    target.closest("td").querySelector(".sh-pending").textContent = `→ ${result.data.sh_p.toFixed(3)} pending`;
    const status = document.getElementById("exposure-count");
    if (status) {
      status.textContent = `Saved: sh_p of ${target.dataset.ref} is ${result.data.sh_p.toFixed(3)} in unvalidated ` +
        `revision ${result.data.revision_id.slice(0, 8)}; validate and promote it on the Bundles page.`;
    }
    dialog.close();
  });
}

function setupSingleSubmit() {
  // A double click must not post an answer twice (the service would refuse a changed one).
  document.querySelectorAll("form.question").forEach((form) => {
    form.addEventListener("submit", () => {
      form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; });
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupSignIn();
  setupShEditor();
  setupSingleSubmit();
});
