// The photo grid and viewer of the searchapp page (a Streamlit components.v2 component).
// Python sends tiles as data; this renders a justified grid (rows at the photos' own
// aspect ratios, CSS flex) and a full-screen viewer, and reports actions back as one
// trigger value ("like", "more", "clear-filter"). Images load by URL from the page
// server's /photo/* routes, so the browser caches them and appends never redraw tiles.

const STATE = new WeakMap();
const NAME_CHARS = 26;
// "more like this": two overlapping frames (inline SVG: no icon font, no emoji font needed)
const LIKE_ICON = `<svg viewBox="0 0 20 20" width="14" height="14" aria-hidden="true"
  fill="none" stroke="currentColor" stroke-width="1.8"><rect x="2" y="6" width="10" height="10"
  rx="2"/><rect x="8" y="2" width="10" height="10" rx="2"/></svg>`;

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let st = STATE.get(parentElement);
  if (!st) {
    st = setup(parentElement, setTriggerValue);
    STATE.set(parentElement, st);
  }
  st.send = setTriggerValue;
  render(st, data || {});
  performance.mark("searchapp-grid");  // for benchmarks/bench_page.py
}

function setup(root, send) {
  const host = document.createElement("div");
  host.className = "gallery";
  host.innerHTML = `
    <div class="selbar" hidden>
      <span class="selcount"></span>
      <button type="button" data-sel="copy">Copy paths</button>
      <a class="btn" data-sel="zip" download="photos.zip">Download zip</a>
      <button type="button" data-sel="like">More like these</button>
      <button type="button" data-sel="clear">Clear selection</button>
      <span class="selnote" role="status"></span>
    </div>
    <div class="sections"></div>
    <div class="more-wrap"><button type="button" class="more" hidden>Load more</button></div>`;
  root.appendChild(host);
  const st = {
    root, host, send, key: null, tiles: [], nodes: new Map(), selected: new Set(),
    sections: host.querySelector(".sections"), lastSection: null, lastMonth: null,
    viewer: null, index: -1, returnFocus: null,
  };
  host.querySelector(".more").addEventListener("click", () => showMore(st));
  host.querySelector(".selbar").addEventListener("click", (e) => selectionAction(st, e));
  st.onKey = (e) => onKey(st, e);
  document.addEventListener("keydown", st.onKey);
  return st;
}

// ------------------------------------------------------------------ the grid
function render(st, data) {
  const tiles = data.tiles || [];
  if (data.key !== st.key || !samePrefix(st.tiles, tiles)) {
    st.sections.replaceChildren();
    st.nodes.clear();
    st.tiles = [];
    st.lastSection = null;
    st.lastMonth = null;
    st.key = data.key;
    st.selected.clear();
    st.shown = 0;
  }
  st.groups = !!data.groups;
  st.page = data.page || 120;
  st.zipMax = data.zip_max || Infinity;
  st.data = tiles;
  st.hasMore = !!data.has_more;
  st.asked = false;
  st.shown = Math.max(st.shown, data.show || st.page);
  reveal(st);
  st.host.querySelector(".more").textContent = data.more_label || "Load more";
  updateSelection(st);
  if (st.viewer && st.index >= 0 && st.index < st.tiles.length) showInViewer(st, st.index);
}

// Python sends a page more than is shown: "load more" shows it at once, from here, and
// asks Python for the next one in the background, so no click waits for a rerun.
function showMore(st) {
  st.shown += st.page;
  reveal(st);
  if (!st.asked && st.hasMore && st.data.length - st.shown < st.page) {
    st.asked = true;
    st.send("action", { kind: "more", shown: st.shown });
  }
}

function reveal(st) {
  const upto = Math.min(st.shown, st.data.length);
  const start = st.tiles.length;
  st.tiles = st.data.slice(0, Math.max(upto, start));
  for (let i = start; i < upto; i++) appendTile(st, st.data[i], i);
  const more = st.host.querySelector(".more");
  more.hidden = !(st.data.length > st.tiles.length || st.hasMore);
  st.host.dataset.count = String(st.tiles.length);
}

function samePrefix(old, tiles) {
  if (tiles.length < old.length) return false;
  for (let i = 0; i < old.length; i++) if (old[i].photo_id !== tiles[i].photo_id) return false;
  return true;
}

function appendTile(st, tile, index) {
  const month = st.groups ? tile.month : "";
  if (!st.lastSection || month !== st.lastMonth) {
    const section = document.createElement("section");
    if (month) {
      const h = document.createElement("h3");
      h.className = "month";
      h.textContent = month;
      section.appendChild(h);
    }
    const row = document.createElement("div");
    row.className = "rows";
    section.appendChild(row);
    st.sections.appendChild(section);
    st.lastSection = row;
    st.lastMonth = month;
  }
  const ar = aspect(tile);
  const el = document.createElement("div");
  el.className = "tile";
  el.style.setProperty("--ar", ar.toFixed(4));
  el.dataset.id = String(tile.photo_id);
  const name = baseName(tile.path);
  el.innerHTML = `
    <i style="padding-bottom:${(100 / ar).toFixed(3)}%"></i>
    <button type="button" class="open" aria-label="Open ${escapeHtml(name)}"
      title="${escapeHtml(hint(tile))}"><img alt="" loading="lazy" decoding="async"></button>
    <span class="name">${escapeHtml(middle(name, NAME_CHARS))}</span>
    <label class="pick" title="Select"><input type="checkbox" aria-label="Select ${escapeHtml(name)}"></label>
    <button type="button" class="like" title="More like this" aria-label="More like ${escapeHtml(name)}">${LIKE_ICON}</button>`;
  const marks = [];
  if (tile.copies > 1) marks.push(`${tile.copies} copies`);
  if (tile.similar > 0) marks.push(`+${tile.similar} similar`);
  if (marks.length) {
    const badge = document.createElement("span");
    badge.className = "copies";
    badge.textContent = marks.join(" · ");
    el.appendChild(badge);
  }
  if (tile.by_name) el.classList.add("by-name");
  const img = el.querySelector("img");
  img.addEventListener("error", () => el.classList.add("missing"), { once: true });
  img.src = thumbUrl(tile);
  el.querySelector(".open").addEventListener("click", () => openViewer(st, indexOf(st, tile)));
  el.querySelector(".like").addEventListener("click", () =>
    st.send("action", { kind: "like", ids: [tile.photo_id] }));
  el.querySelector(".pick input").addEventListener("change", (e) => {
    if (e.target.checked) st.selected.add(tile.photo_id);
    else st.selected.delete(tile.photo_id);
    updateSelection(st);
  });
  st.lastSection.appendChild(el);
  st.nodes.set(tile.photo_id, el);
}

function indexOf(st, tile) {
  return st.tiles.findIndex((t) => t.photo_id === tile.photo_id);
}

function aspect(tile) {
  const r = tile.width && tile.height ? tile.width / tile.height : 4 / 3;
  return Math.min(Math.max(r, 0.5), 3);
}

function thumbUrl(tile) {
  return tile.content_hash ? `/photo/thumb/${tile.content_hash}` : "/photo/thumb/none";
}

function hint(tile) {
  const parts = [baseName(tile.path), dateText(tile.taken_at)];
  if (tile.by_name) parts.push("name matches");
  else if (tile.score !== null && tile.score !== undefined) parts.push(`match ${relevance(tile.score)}`);
  return parts.join(" · ");
}

function relevance(score) {
  return score >= 0.3 ? "strong" : score >= 0.2 ? "good" : "weak";
}

// ------------------------------------------------------------------ selection
function updateSelection(st) {
  for (const id of [...st.selected]) if (!st.nodes.has(id)) st.selected.delete(id);
  const bar = st.host.querySelector(".selbar");
  const n = st.selected.size;
  bar.hidden = n === 0;
  bar.querySelector(".selcount").textContent = `${n} selected`;
  const zip = bar.querySelector("[data-sel=zip]"), tooMany = n > st.zipMax;
  if (tooMany) zip.removeAttribute("href");  // the server refuses it too: say so first
  else zip.href = `/photo/zip?ids=${[...st.selected].join(",")}`;
  zip.setAttribute("aria-disabled", String(tooMany));
  if (tooMany || bar.dataset.tooMany === "true") note(bar.querySelector(".selnote"), tooMany
    ? `${n} selected: a zip holds at most ${st.zipMax}; select fewer to download them.` : "");
  bar.dataset.tooMany = String(tooMany);
  for (const [id, el] of st.nodes) {
    const on = st.selected.has(id);
    el.classList.toggle("selected", on);
    el.querySelector(".pick input").checked = on;
  }
}

function selectionAction(st, e) {
  const kind = e.target.closest("[data-sel]")?.dataset.sel;
  const ids = [...st.selected];
  if (kind === "copy") {
    const paths = st.tiles.filter((t) => st.selected.has(t.photo_id)).map((t) => t.path);
    copyText(paths.join("\n")).then((ok) => note(st.host.querySelector(".selnote"),
      ok ? `Copied ${paths.length} paths.` : "Copying is blocked here; select the paths by hand."));
  } else if (kind === "like") {
    st.send("action", { kind: "like", ids });
  } else if (kind === "clear") {
    st.selected.clear();
    updateSelection(st);
  }
}

// ------------------------------------------------------------------ the viewer
function openViewer(st, index) {
  if (index < 0) return;
  st.returnFocus = st.root.activeElement || document.activeElement;
  if (!st.viewer) st.viewer = buildViewer(st);
  st.viewer.hidden = false;
  document.body.style.overflow = "hidden";
  showInViewer(st, index);
  st.viewer.querySelector(".close").focus();
}

function closeViewer(st) {
  if (!st.viewer || st.viewer.hidden) return;
  st.viewer.hidden = true;
  document.body.style.overflow = "";
  const tile = st.tiles[st.index];
  const node = tile && st.nodes.get(tile.photo_id);
  (node ? node.querySelector(".open") : st.returnFocus)?.focus();
  st.index = -1;
}

function buildViewer(st) {
  const v = document.createElement("div");
  v.className = "viewer";
  v.setAttribute("role", "dialog");
  v.setAttribute("aria-modal", "true");
  v.setAttribute("aria-label", "Photo viewer");
  v.innerHTML = `
    <div class="stage">
      <img class="big" alt="">
      <button type="button" class="nav prev" aria-label="Previous photo">&#x2039;</button>
      <button type="button" class="nav next" aria-label="Next photo">&#x203A;</button>
      <button type="button" class="close" aria-label="Close viewer">&#x2715;</button>
    </div>
    <aside class="panel">
      <h2 class="vname"></h2>
      <dl class="facts"></dl>
      <div class="actions">
        <button type="button" data-act="like">More like this</button>
        <a class="btn" data-act="original" target="_blank" rel="noopener">Open original</a>
        <a class="btn" data-act="download">Download</a>
        <button type="button" data-act="copy">Copy path</button>
        <button type="button" data-act="reveal">Open folder</button>
      </div>
      <p class="vnote" role="status"></p>
      <div class="copylist"></div>
    </aside>`;
  v.querySelector(".prev").addEventListener("click", () => step(st, -1));
  v.querySelector(".next").addEventListener("click", () => step(st, 1));
  v.querySelector(".close").addEventListener("click", () => closeViewer(st));
  v.querySelector(".actions").addEventListener("click", (e) => viewerAction(st, e));
  let x0 = null;
  v.addEventListener("touchstart", (e) => { x0 = e.touches[0].clientX; }, { passive: true });
  v.addEventListener("touchend", (e) => {
    if (x0 === null) return;
    const dx = e.changedTouches[0].clientX - x0;
    if (Math.abs(dx) > 50) step(st, dx < 0 ? 1 : -1);
    x0 = null;
  });
  st.host.appendChild(v);
  return v;
}

function step(st, delta) {
  const next = st.index + delta;
  if (next < 0 || next >= st.tiles.length) return;
  showInViewer(st, next);
}

function showInViewer(st, index) {
  const tile = st.tiles[index];
  const v = st.viewer;
  st.index = index;
  v.dataset.id = String(tile.photo_id);
  const big = v.querySelector(".big");
  // the cached thumbnail at once, then the preview over it once the browser has it
  big.src = thumbUrl(tile);
  big.alt = baseName(tile.path);
  const want = `/photo/preview/${tile.photo_id}`;
  const full = new Image();
  full.onload = () => { if (st.index === index) big.src = want; };
  full.src = want;
  for (const near of [index + 1, index - 1]) {
    if (st.tiles[near]) new Image().src = `/photo/preview/${st.tiles[near].photo_id}`;
  }
  v.querySelector(".prev").disabled = index === 0;
  v.querySelector(".next").disabled = index === st.tiles.length - 1;
  v.querySelector(".vname").textContent = middle(baseName(tile.path), 40);
  v.querySelector(".vname").title = baseName(tile.path);
  v.querySelector("[data-act=original]").href = `/photo/original/${tile.photo_id}`;
  v.querySelector("[data-act=download]").href = `/photo/original/${tile.photo_id}?download=1`;
  v.querySelector("[data-act=download]").setAttribute("download", baseName(tile.path));
  v.querySelector(".vnote").textContent = "";
  facts(v, tile, null);
  fetch(`/photo/info/${tile.photo_id}`, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((info) => { if (info && st.index === index) facts(v, tile, info); })
    .catch(() => {});
}

function facts(v, tile, info) {
  const rows = [
    ["Date", dateText(tile.taken_at, true)],
    ["Camera", info ? info.camera || "unknown" : "…"],
    ["Size", tile.width ? `${tile.width} × ${tile.height} px` : "unknown"],
    ["File", `${tile.format || "?"}, ${sizeText(tile.size)}`],
    ["Folder", info ? info.folder : dirName(tile.relative)],
  ];
  if (info && info.gps) rows.push(["GPS", `${info.gps[0].toFixed(5)}, ${info.gps[1].toFixed(5)}`]);
  const dl = v.querySelector(".facts");
  dl.replaceChildren();
  for (const [k, val] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = val;
    dl.append(dt, dd);
  }
  const list = v.querySelector(".copylist");
  list.replaceChildren();
  if (info && info.copies.length > 1) {
    const h = document.createElement("h3");
    h.textContent = `${info.copies.length} copies`;
    const ul = document.createElement("ul");
    for (const p of info.copies) {
      const li = document.createElement("li");
      li.textContent = p;
      ul.appendChild(li);
    }
    list.append(h, ul);
  }
}

function viewerAction(st, e) {
  const kind = e.target.closest("[data-act]")?.dataset.act;
  const tile = st.tiles[st.index];
  const out = st.viewer.querySelector(".vnote");
  if (!tile || !kind) return;
  if (kind === "like") {
    closeViewer(st);
    st.send("action", { kind: "like", ids: [tile.photo_id] });
  } else if (kind === "copy") {
    copyText(tile.path).then((ok) => note(out, ok ? "Path copied." : tile.path));
  } else if (kind === "reveal") {
    fetch(`/photo/reveal/${tile.photo_id}`, { method: "POST", credentials: "same-origin" })
      .then((r) => r.json())
      .then((r) => note(out, r.message))
      .catch(() => note(out, "The page server did not answer; copy the path instead."));
  }
}

function onKey(st, e) {
  if (!st.host.isConnected) {  // this grid left the page (another tab, a new mount)
    document.removeEventListener("keydown", st.onKey);
    return;
  }
  const open = st.viewer && !st.viewer.hidden;
  if (open) {
    if (e.key === "ArrowRight") step(st, 1);
    else if (e.key === "ArrowLeft") step(st, -1);
    else if (e.key === "Escape") closeViewer(st);
    else if (e.key === "Tab") trapFocus(st, e);
    else return;
    e.preventDefault();
    e.stopPropagation();
  } else if (e.key === "/" && !isTyping(e)) {
    const box = document.querySelector('.st-key-query input');
    if (box) {
      e.preventDefault();
      box.focus();
    }
  }
}

function trapFocus(st, e) {
  const items = [...st.viewer.querySelectorAll("button:not([disabled]), a[href]")];
  const active = st.root.activeElement || document.activeElement;
  const at = items.indexOf(active);
  const next = e.shiftKey ? (at <= 0 ? items.length - 1 : at - 1) : (at + 1) % items.length;
  items[next].focus();
}

function isTyping(e) {
  const t = e.composedPath()[0];
  return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
}

// ------------------------------------------------------------------ small helpers
function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text).then(() => true, () => fallbackCopy(text));
  }
  return Promise.resolve(fallbackCopy(text));
}

function fallbackCopy(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
  area.remove();
  return ok;
}

function note(el, text) {
  el.textContent = text;
}

function middle(text, max) {
  if (text.length <= max) return text;
  const keep = max - 1;
  return text.slice(0, Math.ceil(keep / 2)) + "…" + text.slice(text.length - Math.floor(keep / 2));
}

function baseName(path) {
  return path.split(/[\\/]/).pop();
}

function dirName(path) {
  const parts = (path || "").split(/[\\/]/);
  parts.pop();
  return parts.join("/");
}

function dateText(ts, long) {
  if (!ts) return "no date";
  const d = new Date(ts * 1000);
  return long ? d.toLocaleString() : d.toLocaleDateString();
}

function sizeText(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.round(n / 1024)} KB`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
