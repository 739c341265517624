// medrec review: keyboard shortcuts, page zoom/pan and terminology search. No framework:
// the pages are server-rendered; this only adds keys and the viewer.
(function () {
  "use strict";
  const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");

  // ---------------------------------------------------------------- queue
  const links = Array.from(document.querySelectorAll("a.open-item"));
  if (links.length && !document.getElementById("decide")) {
    let at = 0;
    const mark = () => links.forEach((a, i) => a.closest("tr").classList.toggle("selected", i === at));
    mark();
    document.addEventListener("keydown", (ev) => {
      if (typing(document.activeElement) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === "j") { at = Math.min(links.length - 1, at + 1); mark(); }
      else if (ev.key === "k") { at = Math.max(0, at - 1); mark(); }
      else if (ev.key === "Enter") { links[at].click(); }
      else return;
      ev.preventDefault();
    });
  }

  // ---------------------------------------------------------------- item
  const form = document.getElementById("decide");
  if (!form) return;
  const data = JSON.parse(document.getElementById("item-data").textContent);
  const codeInput = document.getElementById("code");
  const chosen = document.getElementById("chosen");
  const valueInput = document.getElementById("value-after");
  const searchInput = document.getElementById("search-q");
  const results = document.getElementById("search-results");
  const submit = (action) => form.requestSubmit(document.getElementById(action));

  function pick(radio) {
    radio.checked = true;
    codeInput.value = radio.value;
    const [system, code, display] = radio.value.split("|");
    chosen.textContent = "Chosen code: " + code + " " + (display || "") + " (" + system + ") — press c to save";
  }
  form.addEventListener("change", (ev) => { if (ev.target.name === "pick") pick(ev.target); });

  function activeList() {
    const found = Array.from(results.querySelectorAll("input[name=pick]"));
    return found.length ? found : Array.from(document.querySelectorAll("#candidates input[name=pick]"));
  }

  async function search() {
    const q = searchInput.value.trim();
    if (!q) return;
    const body = new URLSearchParams({ q: q, csrf: data.csrf });
    const answer = await fetch(data.search, { method: "POST", body: body, credentials: "same-origin" });
    results.replaceChildren();
    if (!answer.ok) { results.textContent = "Search failed (" + answer.status + ")."; return; }
    const found = (await answer.json()).results;
    if (!found.length) { results.textContent = "Nothing found."; return; }
    found.forEach((c, i) => {
      const li = document.createElement("li");
      const label = document.createElement("label");
      const radio = document.createElement("input");
      radio.type = "radio"; radio.name = "pick"; radio.value = c.system + "|" + c.code + "|" + c.display;
      const key = document.createElement("kbd"); key.textContent = String(i + 1);
      const code = document.createElement("b"); code.textContent = c.code;
      const score = document.createElement("span"); score.className = "score"; score.textContent = c.score.toFixed(2) + " · " + c.match;
      label.append(radio, " ", key, " ", code, " " + c.display + " ", score);
      li.append(label); results.append(li);
    });
    searchInput.blur();
  }

  document.addEventListener("keydown", (ev) => {
    const el = document.activeElement;
    if (el === searchInput) {
      if (ev.key === "Enter") { ev.preventDefault(); search(); }
      else if (ev.key === "Escape") { searchInput.blur(); }
      return;
    }
    if (el === valueInput) {
      if (ev.key === "Enter") { ev.preventDefault(); submit("correct"); }
      else if (ev.key === "Escape") { valueInput.blur(); }
      return;
    }
    if (typing(el) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const list = activeList();
    if (/^[1-9]$/.test(ev.key) && list[Number(ev.key) - 1]) { pick(list[Number(ev.key) - 1]); }
    else if (ev.key === "a") submit("accept");
    else if (ev.key === "c") submit("correct");
    else if (ev.key === "r") submit("reject");
    else if (ev.key === "s") submit("skip");
    else if (ev.key === "e" && valueInput) { valueInput.focus(); valueInput.select(); }
    else if (ev.key === "/") searchInput.focus();
    else if (ev.key === "q") window.location = data.queue;
    else if (ev.key === "+" || ev.key === "=") viewer.zoom(0.8);
    else if (ev.key === "-") viewer.zoom(1.25);
    else if (ev.key === "0") viewer.fit();
    else if (ev.key === "f") viewer.box();
    else return;
    ev.preventDefault();
  });

  // ---------------------------------------------------------------- page viewer: viewBox zoom and pan
  const viewer = (function () {
    const svg = document.getElementById("page-svg");
    const noop = { zoom() {}, fit() {}, box() {} };
    if (!svg) return noop;
    const host = document.getElementById("viewer");
    const W = Number(host.dataset.width), H = Number(host.dataset.height);
    const bbox = host.dataset.bbox ? host.dataset.bbox.split(",").map(Number) : [];
    let view = { x: 0, y: 0, w: W, h: H };
    const apply = () => svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].join(" "));
    const api = {
      zoom(factor, cx, cy) {
        cx = cx === undefined ? view.x + view.w / 2 : cx;
        cy = cy === undefined ? view.y + view.h / 2 : cy;
        const w = Math.min(W * 2, Math.max(40, view.w * factor));
        const h = view.h * (w / view.w);
        view = { x: cx - (cx - view.x) * (w / view.w), y: cy - (cy - view.y) * (h / view.h), w: w, h: h };
        apply();
      },
      fit() { view = { x: 0, y: 0, w: W, h: H }; apply(); },
      box() {
        if (bbox.length !== 4) return api.fit();
        // The field with room around it: a third of the page wide, its lines above and below in view.
        const w = Math.max((bbox[2] - bbox[0]) * 1.6, W / 3), h = w * (H / W) * 0.6;
        view = { x: (bbox[0] + bbox[2]) / 2 - w / 2, y: (bbox[1] + bbox[3]) / 2 - h / 2, w: w, h: h };
        apply();
      },
    };
    const toPage = (ev) => {
      const r = svg.getBoundingClientRect();
      const scale = Math.max(view.w / r.width, view.h / r.height);
      const offX = (r.width * scale - view.w) / 2, offY = (r.height * scale - view.h) / 2;
      return { x: view.x + (ev.clientX - r.left) * scale - offX, y: view.y + (ev.clientY - r.top) * scale - offY, scale: scale };
    };
    svg.addEventListener("wheel", (ev) => { ev.preventDefault(); const p = toPage(ev); api.zoom(ev.deltaY > 0 ? 1.2 : 1 / 1.2, p.x, p.y); }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", (ev) => { drag = { x: ev.clientX, y: ev.clientY, view: Object.assign({}, view), scale: toPage(ev).scale }; svg.setPointerCapture(ev.pointerId); });
    svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      view.x = drag.view.x - (ev.clientX - drag.x) * drag.scale;
      view.y = drag.view.y - (ev.clientY - drag.y) * drag.scale;
      apply();
    });
    svg.addEventListener("pointerup", () => { drag = null; });
    document.querySelectorAll(".zoom button").forEach((b) => b.addEventListener("click", () => {
      ({ in: () => api.zoom(0.8), out: () => api.zoom(1.25), fit: api.fit, box: api.box })[b.dataset.zoom]();
    }));
    api.box();
    return api;
  })();
})();
