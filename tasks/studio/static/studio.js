// condsynth studio page shell: one tab per loaded panel; each panel's script registers a constructor in
// window.StudioPanels[model] and draws into its own <section>. Helpers for the panels live in window.Studio.
"use strict";
window.StudioPanels = window.StudioPanels || {};

window.Studio = {
  status(text, isError) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.className = isError ? "error" : "";
  },
  // JSON (or FormData) request; resolves to the JSON answer, shows the server's message on an error status.
  // Same-origin: the browser sends the token cookie that the page's first load (/?token=...) set.
  async request(method, url, body) {
    const opts = { method, credentials: "same-origin" };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers = { "Content-Type": "application/json" }; }
    const res = await fetch(url, opts);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const msg = data.error || (data.detail && JSON.stringify(data.detail)) || res.statusText;
      Studio.status(`error ${res.status}: ${msg}`, true);
      throw new Error(msg);
    }
    Studio.status("");
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
  const panels = await Studio.request("GET", "/api/panels");
  const tabs = document.getElementById("tabs"), main = document.getElementById("panels");
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
  if (sections.length) sections[0][1].click();
  document.body.dataset.ready = "1";
}
start().catch((e) => Studio.status(`could not start: ${e.message}`, true));
