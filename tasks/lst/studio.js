// Linear Style Transfer panel of condsynth studio (tasks/lst/studio.py): content, styles, alpha, mixing
// weights, photo-real filter, live preview (one request in flight; the newest settings are sent when it returns).
"use strict";
window.StudioPanels.lst = function (root, panel) {
  const S = window.Studio, el = S.el, api = (p) => `/api/lst${p}`, info = panel.info;
  let styles = [], busy = false, dirty = false, webcam = null;
  let issued = 0, applied = 0;  // upload order: a reply older than the newest one shown is stale (two uploads race)

  const contentFile = el("input", { type: "file", id: "lst-content-file", accept: "image/*" });
  const styleFile = el("input", { type: "file", id: "lst-style-file", accept: "image/*" });
  const alpha = el("input", { type: "range", id: "lst-alpha", min: 0, max: 1, step: 0.05, value: 1 });
  const alphaText = el("span", { id: "lst-alpha-value" }, "1.00");
  const photoreal = el("input", { type: "checkbox", id: "lst-photoreal" });
  const side = el("select", { id: "lst-side" }, ...info.sides.map((s) => el("option", { value: s }, `${s} px`)));
  const stylesBox = el("div", { class: "styles", id: "lst-styles" });
  const preview = el("img", { id: "lst-preview", class: "out", alt: "stylised preview" });
  const fps = el("div", { id: "lst-fps", class: "latency" }, "preview: –");
  const camBtn = el("button", { id: "lst-webcam" }, "webcam");
  const contentThumb = el("img", { id: "lst-content-thumb", style: "height:64px;display:block" });
  const hint = el("p", { id: "lst-hint", class: "hint" });
  const waiting = S.waiting("the preview appears once there is a content and a style", { id: "lst-preview-waiting" });
  waiting.querySelector(".spinner").hidden = true;  // it turns while the first preview is being made
  // what to do next: a content image, then a style, then the sliders
  function nextStep() {
    hint.textContent = !contentFile.dataset.loaded ? "Start by choosing a content image (or the webcam), then a style image."
      : !styles.length ? "Now choose a style image: the stylised preview appears on the right of the controls."
        : "Move alpha (how much style) and the mixing weights; tick photo-real for photographs.";
  }

  root.append(
    hint,
    el("div", { class: "row" },
      el("div", { class: "box" }, el("h3", {}, "images"),
        el("div", {}, "content ", contentFile), contentThumb, el("div", {}, "style ", styleFile), camBtn),
      el("div", { class: "box" }, el("h3", {}, "controls"),
        el("div", {}, "alpha ", alpha, alphaText), el("div", {}, el("label", {}, photoreal, "photo-real filter")),
        el("div", {}, "size ", side), el("h3", {}, "styles (mixing weights)"), stylesBox)),
    el("div", { class: "row" }, el("div", { class: "box" }, el("h3", {}, "preview"), waiting, preview, fps)));

  function settings() {
    return { alpha: +alpha.value, photoreal: photoreal.checked, side: +side.value,
             weights: styles.map((s) => +s.weight.value) };
  }
  async function refresh() {
    if (!styles.length || !contentFile.dataset.loaded) return;
    if (busy) { dirty = true; return; }
    busy = true;
    if (!preview.src) waiting.querySelector(".spinner").hidden = false;
    try {
      const t0 = performance.now();
      const data = await S.request("POST", api("/preview"), settings());
      preview.src = data.image;
      waiting.hidden = true;
      preview.dataset.version = String((+preview.dataset.version || 0) + 1);
      const ms = performance.now() - t0;
      fps.textContent = `preview ${data.width}x${data.height}: ${ms.toFixed(0)} ms round trip, ` +
        `${data.frame_ms.toFixed(0)} ms per frame (${(1000 / data.frame_ms).toFixed(1)} fps)`;
    } finally {
      busy = false;
      waiting.querySelector(".spinner").hidden = true;
      if (dirty) { dirty = false; refresh(); }
    }
  }
  function showStyles(summary) {
    if (summary.content_thumb) contentThumb.src = summary.content_thumb;
    const old = styles.map((s) => s.weight.value);
    styles = summary.styles.map((s, i) => ({ name: s.name, thumb: s.thumb,
      weight: el("input", { type: "range", min: 0, max: 1, step: 0.05, value: old[i] || 1, class: "lst-weight" }) }));
    stylesBox.replaceChildren(...styles.map((s, i) => {
      s.weight.addEventListener("input", refresh);
      return el("div", {}, el("img", { src: s.thumb }), s.name, el("br"), s.weight,
        el("button", { onclick: async () => { showStyles(await S.request("DELETE", api(`/style/${i}`))); refresh(); } },
          "remove"));
    }));
  }
  async function send(path, file) {
    const form = new FormData();
    form.append("image", file);
    const seq = ++issued;
    const summary = await S.request("POST", api(path), form);
    if (seq > applied) { applied = seq; showStyles(summary); }  // else a newer reply already showed newer state
    nextStep();
  }
  contentFile.addEventListener("change", async () => {
    if (!contentFile.files.length) return;
    await send("/content", contentFile.files[0]);
    contentFile.dataset.loaded = "1";
    nextStep();
    refresh();
  });
  styleFile.addEventListener("change", async () => {
    if (!styleFile.files.length) return;
    await send("/style", styleFile.files[0]);
    styleFile.value = "";
    refresh();
  });
  alpha.addEventListener("input", () => { alphaText.textContent = (+alpha.value).toFixed(2); refresh(); });
  photoreal.addEventListener("change", refresh);
  side.addEventListener("change", refresh);

  // optional: the webcam as the content, one frame at a time (where the browser grants a camera)
  camBtn.addEventListener("click", async () => {
    if (webcam) { webcam.getTracks().forEach((t) => t.stop()); webcam = null; camBtn.textContent = "webcam"; return; }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { S.status("no camera API in this browser", true); return; }
    if (!styles.length) { S.status("add a style first", true); return; }
    webcam = await navigator.mediaDevices.getUserMedia({ video: true }).catch((e) => { S.status(e.message, true); return null; });
    if (!webcam) return;
    camBtn.textContent = "stop webcam";
    const video = el("video", { autoplay: "", playsinline: "" });
    video.srcObject = webcam;
    await video.play();
    const c = el("canvas");
    while (webcam) {
      c.width = video.videoWidth; c.height = video.videoHeight;
      c.getContext("2d").drawImage(video, 0, 0);
      const blob = await new Promise((ok) => c.toBlob(ok, "image/jpeg", 0.9));
      const form = new FormData();
      form.append("image", blob, "frame.jpg");
      const s = settings();
      const q = `?alpha=${s.alpha}&photoreal=${s.photoreal}&side=${s.side}`;
      const data = await S.request("POST", api(`/frame${q}`), form).catch(() => null);
      if (!data) break;
      preview.src = data.image;
      fps.textContent = `webcam ${data.width}x${data.height}: ${data.frame_ms.toFixed(0)} ms per frame`;
    }
  });
  nextStep();
};
