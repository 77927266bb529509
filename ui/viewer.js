// The full-screen viewer of the photo grid, and the small helpers both use. Loaded into
// the same component module as gallery.js (ui/gallery.py joins the two files).

// ------------------------------------------------------------------ the viewer
function openViewer(st, index) {
  if (index < 0) return;
  st.returnFocus = st.root.activeElement || document.activeElement;
  if (!st.viewer) st.viewer = buildViewer(st);
  st.viewer.hidden = false;
  document.body.style.overflow = "hidden";
  showInViewer(st, index);
  pushViewer(st);
  st.viewer.querySelector(".close").focus();
}

// Back closes the viewer, as in a photo app: an open viewer is one history entry. Both
// entries carry a "#": Streamlit reruns the script on a history step unless the URL it
// lands on has a hash and the same query, so stepping between these two costs no rerun.
function pushViewer(st) {
  const id = st.tiles[st.index].photo_id;
  if (history.state && history.state.searchappViewer) {
    history.replaceState({ searchappViewer: id }, "");  // Forward comes back to this one
    return;
  }
  const here = location.href.split("#")[0];
  history.replaceState(history.state, "", `${here}#`);
  history.pushState({ searchappViewer: id }, "", `${here}#photo`);
}

// ``after`` runs once the viewer's history entry is gone (a new search pushed before it
// would be the entry that Back drops).
function closeViewer(st, after) {
  if (!st.viewer || st.viewer.hidden) {
    if (after) after();
    return;
  }
  hideViewer(st);
  const then = () => {
    if (st.moreUntold) tellShown(st);  // the pages the viewer stepped into, for the URL
    if (after) after();
  };
  if (history.state && history.state.searchappViewer) {
    st.afterBack = then;
    history.back();
  } else {
    then();
  }
}

function hideViewer(st) {
  st.viewer.hidden = true;
  document.body.style.overflow = "";
  const tile = st.tiles[st.index];
  const node = tile && st.nodes.get(tile.photo_id);
  (node ? node.querySelector(".open") : st.returnFocus)?.focus();
  st.index = -1;
}

function onPop(st) {
  if (!st.host.isConnected) {
    window.removeEventListener("popstate", st.onPop);
    return;
  }
  const open = st.viewer && !st.viewer.hidden;
  const photo = history.state && history.state.searchappViewer;
  if (open && !photo) {  // Back pressed in the viewer
    hideViewer(st);
    if (st.moreUntold) tellShown(st);
  }
  else if (!open && photo && !st.afterBack) openViewer(st, indexOfId(st, photo));  // Forward
  const after = st.afterBack;
  st.afterBack = null;
  if (after) after();
}

function indexOfId(st, id) {
  return st.tiles.findIndex((t) => t.photo_id === id);
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
      <p class="vgone" role="status"></p>
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
  if (next >= st.tiles.length && moreToShow(st)) showMore(st);  // on into the next page
  if (next < 0 || next >= st.tiles.length) return;
  showInViewer(st, next);
  pushViewer(st);
}

function moreToShow(st) {
  return st.data.length > st.tiles.length;
}

function showInViewer(st, index) {
  const tile = st.tiles[index];
  const v = st.viewer;
  st.index = index;
  v.dataset.id = String(tile.photo_id);
  const big = v.querySelector(".big");
  // the cached thumbnail at once, then the preview over it once the browser has it
  big.src = thumbSrc(tile);
  big.alt = baseName(tile.path);
  const want = `/photo/preview/${tile.photo_id}`;
  const full = new Image();
  full.onload = () => { if (st.index === index) big.src = want; };
  full.src = want;
  for (const near of [index + 1, index - 1]) {
    if (st.tiles[near]) new Image().src = `/photo/preview/${st.tiles[near].photo_id}`;
  }
  v.querySelector(".prev").disabled = index === 0;
  v.querySelector(".next").disabled = index === st.tiles.length - 1 && !moreToShow(st);
  v.querySelector(".vname").textContent = middle(baseName(tile.path), 40);
  v.querySelector(".vname").title = baseName(tile.path);
  v.querySelector("[data-act=original]").href = `/photo/original/${tile.photo_id}`;
  v.querySelector("[data-act=download]").href = `/photo/original/${tile.photo_id}?download=1`;
  v.querySelector("[data-act=download]").setAttribute("download", baseName(tile.path));
  v.querySelector(".vnote").textContent = "";
  facts(v, tile, null);
  fileGone(v, "", false);
  const id = String(tile.photo_id);  // a late answer for a photo no longer shown is dropped
  fetch(`/photo/info/${tile.photo_id}`, { credentials: "same-origin" })
    .then((r) => (r.status === 404 ? { gone: true } : r.ok ? r.json() : null))
    .then((info) => {
      if (!info || v.dataset.id !== id) return;
      facts(v, tile, info.gone ? { gone: true, folder: dirName(tile.relative), copies: [] } : info);
      if (info.gone || info.unavailable) fileGone(v, info.gone ? GONE : info.unavailable, !!info.gone);
    })
    .catch(() => {});
}

// A photo deleted or moved since the grid was drawn still shows its cached picture; the
// panel says why (the server's one line where it is still indexed) and offers no original
// (its camera stayed "…", its links answered 404).
const GONE = "This photo has left the library (deleted or moved since the page was drawn).";

function fileGone(v, text, left) {
  note(v.querySelector(".vgone"), text);
  for (const act of ["original", "download", "reveal", "like"]) {
    // "more like this" needs the photo in the library, not its file
    v.querySelector(`[data-act=${act}]`).toggleAttribute("hidden", act === "like" ? left : !!text);
  }
}

function facts(v, tile, info) {
  const rows = [
    ["Date", dateText(tile.taken, true)],
    ["Camera", info ? info.camera || "unknown" : "…"],
    ["Size", tile.width ? `${tile.width} × ${tile.height} px` : "unknown"],
    ["File", `${tile.format || "?"}, ${sizeText(tile.size)}`],
    ["Folder", info ? info.folder : dirName(tile.relative)],
  ].filter(([k]) => !(k === "Camera" && info && info.gone));  // not "unknown": gone
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
      if (p === info.path) {  // the one the tile, its original and its download are
        const mark = document.createElement("b");
        mark.textContent = " (shown)";
        li.append(mark);
      }
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
    closeViewer(st, () => st.send("action", { kind: "like", ids: [tile.photo_id] }));
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
  } else if (e.key === "Escape" && st.selected.size && !isTyping(e)) {
    st.selected.clear();  // as in a photo app: Escape drops the selection
    updateSelection(st);
    e.preventDefault();
  } else {
    tileKey(st, e);
  }
}

// Keys on a focused photo of the grid: x selects, l finds more like it, arrows move focus
// (up and down to the photo of the next row nearest above or below).
function tileKey(st, e) {
  const open = e.composedPath()[0];
  const tile = open && open.classList && open.classList.contains("open") && open.closest(".tile");
  if (!tile || !st.host.contains(tile) || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === "x") tile.querySelector(".pick input").click();
  else if (e.key === "l") tile.querySelector(".like").click();
  else if (e.key.startsWith("Arrow")) {
    const to = neighbour(st, tile, e.key);
    if (!to) return;  // at an edge: the key scrolls the page as usual
    to.querySelector(".open").focus();
    to.scrollIntoView({ block: "nearest" });
  } else return;
  e.preventDefault();
}

function neighbour(st, tile, key) {
  const tiles = [...st.sections.querySelectorAll(".tile")];
  const at = tiles.indexOf(tile);
  if (key === "ArrowLeft") return tiles[at - 1] || null;
  if (key === "ArrowRight") return tiles[at + 1] || null;
  const box = tile.getBoundingClientRect();
  const mid = box.left + box.width / 2;
  const down = key === "ArrowDown";
  let best = null, bestRow = null, bestDx = Infinity;
  for (const other of down ? tiles.slice(at + 1) : tiles.slice(0, at).reverse()) {
    const r = other.getBoundingClientRect();
    const beyond = down ? r.top >= box.bottom - 1 : r.bottom <= box.top + 1;
    if (!beyond) continue;
    if (bestRow === null) bestRow = r.top;
    else if (Math.abs(r.top - bestRow) > 1) break;  // past the next row
    const dx = Math.abs(r.left + r.width / 2 - mid);
    if (dx < bestDx) [best, bestDx] = [other, dx];
  }
  return best;
}

function trapFocus(st, e) {
  const items = [...st.viewer.querySelectorAll(
    "button:not([disabled]):not([hidden]), a[href]:not([hidden])")];
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

function dateText(taken, long) {
  if (!taken) return "no date";
  // the wall clock the camera wrote ("2023-07-01T10:00:00"), shown as written wherever
  // this browser is: read and shown as UTC (a local Date would also move the hour that
  // daylight saving skips)
  const [y, mo, d, h, mi, sec] = taken.split(/[-T:]/).map(Number);
  const when = new Date(Date.UTC(y, mo - 1, d, h, mi, sec));
  const utc = { timeZone: "UTC" };
  return long ? when.toLocaleString(undefined, utc) : when.toLocaleDateString(undefined, utc);
}

function sizeText(n) {
  if (n >= 1048576) return `${(n / 1048576).toFixed(1)} MB`;
  return n >= 1024 ? `${Math.round(n / 1024)} KB` : `${n} bytes`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
