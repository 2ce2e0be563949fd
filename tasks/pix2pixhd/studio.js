// pix2pixHD panel of condsynth studio (tasks/pix2pixhd/studio.py): label map editor + generated image.
"use strict";
window.StudioPanels.pix2pixhd = function (root, panel) {
  const S = window.Studio, el = S.el, api = (p) => `/api/pix2pixhd${p}`, info = panel.info;
  let scene = null, selected = null, tool = "brush", stroke = null;

  const classSelect = el("select", { id: "p2p-class" },
    ...info.classes.map((c) => el("option", { value: c.id }, `${c.id} ${c.name}`)));
  const swatch = el("span", { class: "swatch" });
  const paintSwatch = () => { swatch.style.background = info.classes[+classSelect.value].color; };
  classSelect.addEventListener("change", paintSwatch);
  const radius = el("input", { id: "p2p-radius", type: "number", min: 1, max: 64, value: 3, style: "width:4em" });
  const tools = ["brush", "fill", "instance", "select"].map((t) => {
    const r = el("input", { type: "radio", name: "p2p-tool", id: `p2p-tool-${t}`, value: t });
    if (t === tool) r.checked = true;
    r.addEventListener("change", () => { tool = t; });
    return el("label", {}, r, { brush: "brush", fill: "bucket fill", instance: "new instance", select: "select" }[t]);
  });
  const sceneSelect = el("select", { id: "p2p-scene" },
    ...Array.from({ length: info.num_scenes }, (_, i) => el("option", { value: i }, `scene ${i}`)));
  const labelFile = el("input", { type: "file", id: "p2p-label-file", accept: "image/png" });
  const instFile = el("input", { type: "file", id: "p2p-inst-file", accept: "image/png" });
  const photoFile = el("input", { type: "file", id: "p2p-photo-file", accept: "image/*" });
  const canvas = el("canvas", { id: "p2p-label-canvas", class: "map", width: 64, height: 64 });
  const out = el("img", { id: "p2p-image", class: "out", alt: "generated image" });
  const latency = el("div", { id: "p2p-latency", class: "latency" }, "edit → image: –");
  const HINTS = {
    start: "Paint on the label map with the brush (pick a class first); the select tool picks an object to restyle.",
    empty: "Start by uploading a label PNG (class ids, optionally an instance PNG and a photo): no dataset scenes.",
  };
  const hint = el("p", { id: "p2p-hint", class: "hint" }, info.num_scenes ? HINTS.start : HINTS.empty);
  const firstText = info.num_scenes ? "generating scene 0…" : "upload a label PNG";
  const outWait = S.waiting(firstText, { id: "p2p-image-waiting" });
  const mapWait = S.waiting(info.num_scenes ? "loading scene 0…" : "no scene yet", { id: "p2p-label-waiting" });
  if (!info.num_scenes) { outWait.querySelector(".spinner").remove(); mapWait.querySelector(".spinner").remove(); }
  canvas.hidden = true;
  out.addEventListener("error", () => S.error("the generated image could not be shown: open the scene again"));
  const undoBtn = el("button", { id: "p2p-undo", onclick: () => edit("/undo", undefined, true) }, "undo");
  const redoBtn = el("button", { id: "p2p-redo", onclick: () => edit("/redo", undefined, true) }, "redo");
  const downloads = el("span", {},
    ...["label", "inst", "image"].map((w) => el("a", { href: api(`/download/${w}.png`), download: "", id: `p2p-dl-${w}`,
      style: "margin-right:.6em" }, `${w}.png`)));
  const instBox = el("div", { id: "p2p-instance", class: "box" }, el("h3", {}, "instance"), "click the map with the select tool");

  root.append(
    hint,
    el("div", { class: "row" },
      el("div", { class: "box" }, el("h3", {}, "scene"), sceneSelect,
        el("button", { id: "p2p-scene-open", onclick: () => open() }, "open"),
        info.scene_error ? el("div", {}, info.scene_error) : "",
        el("div", {}, "label ", labelFile, " instances ", instFile),
        el("div", {}, "photo ", photoFile, el("button", { id: "p2p-upload", onclick: () => upload() }, "upload"))),
      el("div", { class: "box" }, el("h3", {}, "tools"), ...tools, el("div", {}, "class ", classSelect, swatch,
        " radius ", radius), el("div", {}, undoBtn, redoBtn, " download: ", downloads))),
    el("div", { class: "row" },
      el("div", { class: "box" }, el("h3", {}, "label map"), mapWait, canvas),
      el("div", { class: "box" }, el("h3", {}, "generated"), outWait, out, latency),
      instBox));
  paintSwatch();

  // draws the colourised label map (and the selection box) on the canvas
  function draw() {
    if (!scene) return;
    const img = new Image();
    img.onload = () => {
      canvas.width = scene.width; canvas.height = scene.height;
      canvas.hidden = false; mapWait.hidden = true;
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0);
      if (selected) {
        const [x0, y0, x1, y1] = selected.box;
        ctx.strokeStyle = "#fff"; ctx.lineWidth = 1;
        ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
      }
    };
    img.src = scene.label;
  }
  function show(data, t0) {
    scene = data;
    out.src = data.image;
    outWait.hidden = true;
    hint.textContent = HINTS.start;
    undoBtn.disabled = !data.can_undo; redoBtn.disabled = !data.can_redo;
    const ms = performance.now() - t0;
    latency.textContent = `edit → image: ${ms.toFixed(0)} ms (generation ${data.generate_ms.toFixed(0)} ms)`;
    latency.dataset.ms = ms.toFixed(1);
    out.dataset.version = String((+out.dataset.version || 0) + 1);
    draw();
  }
  async function edit(path, body, keepSelection) {
    const t0 = performance.now();
    const data = await S.request("POST", api(path), body);
    show(data, t0);
    if (keepSelection && selected && selected.pick) await reselect(selected.pick);
    else if (selected) { selected = null; renderInstance(); }
    return data;
  }
  // the instance under pixel p: its class, box, appearance and cluster thumbnails
  async function reselect(p) {
    selected = await S.request("POST", api("/select"), { x: p[0], y: p[1] });
    selected.pick = p; renderInstance(); draw();
  }
  async function open() { selected = null; renderInstance(); await edit("/scene", { index: +sceneSelect.value }); }
  async function upload() {
    if (!labelFile.files.length) { S.status("choose a label PNG first", true); return; }
    const form = new FormData();
    form.append("label", labelFile.files[0]);
    if (instFile.files.length) form.append("inst", instFile.files[0]);
    if (photoFile.files.length) form.append("photo", photoFile.files[0]);
    selected = null; renderInstance();
    await edit("/upload", form);
  }
  function at(ev) {
    const r = canvas.getBoundingClientRect();
    return [Math.floor((ev.clientX - r.left) * canvas.width / r.width),
            Math.floor((ev.clientY - r.top) * canvas.height / r.height)];
  }
  function renderInstance() {
    instBox.replaceChildren(el("h3", {}, "instance"));
    if (!selected || selected.class_id === undefined) { instBox.append("click the map with the select tool"); return; }
    const s = selected;
    const cls = el("select", { id: "p2p-instance-class" },
      ...info.classes.map((c) => el("option", { value: c.id }, `${c.id} ${c.name}`)));
    cls.value = s.class_id;
    const thumbs = el("div", { class: "thumbs", id: "p2p-thumbs" }, ...s.thumbnails.map((src, i) => {
      const t = el("img", { src, title: `cluster ${i}`, "data-index": i });
      if (s.style.kind === "cluster" && s.style.index === i) t.classList.add("chosen");
      t.addEventListener("click", () => style("cluster", i));
      return t;
    }));
    instBox.append(
      el("div", {}, `id ${s.instance} (${s.is_object ? "object" : "region"}), class ${s.class_name}`),
      el("div", {}, cls, el("button", { id: "p2p-set-class", onclick: () => edit("/instance/class",
        { instance: s.instance, class_id: +cls.value }, true) }, "change class"),
      el("button", { id: "p2p-delete", onclick: () => edit("/instance/delete", { instance: s.instance }) }, "delete")),
      el("div", {}, `appearance (${s.style.kind}${s.style.kind === "cluster" ? " " + s.style.index : ""}):`),
      s.thumbnails.length ? thumbs : el("div", {}, "no feature clusters (run task=cluster_features)"),
      el("div", {}, el("button", { id: "p2p-random", onclick: () => style("random") }, "random"),
        el("button", { id: "p2p-photo", onclick: () => style("photo") }, "from photo")));
    if (!(scene && scene.has_photo)) instBox.querySelector("#p2p-photo").disabled = true;
  }
  async function style(kind, index) {
    await edit("/instance/style", { instance: selected.instance, kind, index: index || 0 }, true);
  }

  canvas.addEventListener("mousedown", async (ev) => {
    if (!scene) return;
    const p = at(ev);
    if (tool === "brush" || tool === "instance") { stroke = [p]; return; }
    if (tool === "fill") await edit("/fill", { class_id: +classSelect.value, x: p[0], y: p[1] });
    if (tool === "select") {
      await reselect(p);
    }
  });
  canvas.addEventListener("mousemove", (ev) => {
    if (!stroke) return;
    stroke.push(at(ev));
    const ctx = canvas.getContext("2d"), p = stroke[stroke.length - 1];
    ctx.fillStyle = info.classes[+classSelect.value].color;
    ctx.beginPath(); ctx.arc(p[0], p[1], +radius.value, 0, 2 * Math.PI); ctx.fill();
  });
  window.addEventListener("mouseup", async () => {
    if (!stroke) return;
    const points = stroke; stroke = null;
    const data = await edit("/paint", { class_id: +classSelect.value, points, radius: +radius.value,
                                        new_instance: tool === "instance" });
    if (tool === "instance" && data.instance !== null) await reselect(points[0]);
  });

  // opens ready: the session's scene (on its first visit, the server opens scene 0) with its generated image
  if (info.num_scenes) {
    const t0 = performance.now();
    S.request("GET", api("/state")).then((data) => {
      show(data, t0);
      if (/^scene\d+$/.test(data.name)) sceneSelect.value = String(+data.name.slice(5));
    }).catch(() => { outWait.replaceChildren("no image: see the message above"); mapWait.replaceChildren(""); });
  }
};
