// condsynth studio page shell: one tab per loaded panel; each panel's script registers a constructor in
// window.StudioPanels[model] and draws into its own <section>. Helpers for the panels live in window.Studio.
"use strict";
window.StudioPanels = window.StudioPanels || {};

let inFlight = 0;  // requests waiting for the server: the header's spinner turns while there are any

window.Studio = {
  status(text, isError) {
    const el = document.getElementById("status");
    el.textContent = isError ? "" : text;
    el.className = "";
    if (isError) Studio.error(text);
  },
  // an error's one-line message, in the page (under the header) until dismissed or the next request succeeds
  error(text) {
    const box = document.getElementById("message");
    const line = String(text).replace(/\s+/g, " ").trim();
    document.getElementById("message-text").textContent = line;
    box.title = line;
    box.hidden = !line;
  },
  busy(delta) {
    inFlight = Math.max(0, inFlight + delta);
    document.getElementById("busy").hidden = inFlight === 0;
  },
  // a placeholder with a spinner (an output whose first image is still being made); hide it when the image comes
  waiting(text, attrs) {
    return Studio.el("div", { class: "waiting", ...(attrs || {}) }, Studio.el("span", { class: "spinner" }), text);
  },
  // JSON (or FormData) request; resolves to the JSON answer, shows the server's message on an error status.
  // Same-origin: the browser sends the token cookie that the page's first load (/?token=...) set.
  async request(method, url, body) {
    const opts = { method, credentials: "same-origin" };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers = { "Content-Type": "application/json" }; }
    Studio.busy(+1);
    let res, data;
    try {
      res = await fetch(url, opts);
      data = await res.json().catch(() => ({}));
    } catch (e) {
      Studio.error(`the studio server did not answer (${e.message}): is it still running?`);
      throw e;
    } finally {
      Studio.busy(-1);
    }
    if (!res.ok) {
      const msg = data.error || (data.detail && JSON.stringify(data.detail)) || res.statusText;
      Studio.error(`error ${res.status}: ${msg}`);
      const err = new Error(msg);
      err.shown = true;
      throw err;
    }
    Studio.status("");
    Studio.error("");
    return data;
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      // no inline handlers or style attributes: the Content-Security-Policy allows neither (CSSOM is allowed)
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "style") e.style.cssText = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  },
  loadScript(src) {
    return new Promise((ok, fail) => {
      const s = document.createElement("script");
      s.src = src; s.onload = ok; s.onerror = fail;
      document.body.append(s);
    });
  },
};

async function start() {
  Studio.busy(+1);
  let panels;
  try { panels = await Studio.request("GET", "/api/panels"); } finally { Studio.busy(-1); }
  const tabs = document.getElementById("tabs"), main = document.getElementById("panels");
  document.getElementById("loading").remove();
  const sections = [];
  for (const p of panels) {
    await Studio.loadScript(p.script);
    const section = Studio.el("section", { id: `panel-${p.model}` });
    const tab = Studio.el("button", { id: `tab-${p.model}` }, p.title);
    tab.addEventListener("click", () => {
      sections.forEach(([s, t]) => { s.classList.remove("active"); t.classList.remove("active"); });
      section.classList.add("active"); tab.classList.add("active");
    });
    sections.push([section, tab]);
    tabs.append(tab); main.append(section);
    if (window.StudioPanels[p.model]) window.StudioPanels[p.model](section, p);
    else section.textContent = `no page script for ${p.model}`;
  }
  if (!panels.length) main.append(Studio.el("p", { class: "hint" }, "no model is loaded: start the studio with "
    + "task.ckpt_path=<checkpoint>, or POST its path to /api/models"));
  if (sections.length) sections[0][1].click();
  document.body.dataset.ready = "1";
}
document.getElementById("message-close").addEventListener("click", () => Studio.error(""));
// a failed request already shows its message; anything else a panel's handler throws shows here too
window.addEventListener("unhandledrejection", (ev) => {
  if (!(ev.reason && ev.reason.shown)) Studio.error(`error: ${ev.reason && ev.reason.message || ev.reason}`);
  ev.preventDefault();
});
start().catch((e) => Studio.error(`could not start: ${e.message}`));
