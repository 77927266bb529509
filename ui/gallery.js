// The photo grid and viewer of the searchapp page (a Streamlit components.v2 component).
// Python sends tiles as data; this renders a justified grid (rows at the photos' own
// aspect ratios, CSS flex) and a full-screen viewer, and reports actions back as one
// trigger value ("like", "more", "clear-filter"). Images load by URL from the page
// server's /photo/* routes, so the browser caches them and appends never redraw tiles.

const STATE = new WeakMap();
const POLL_MS = 5000;  // one small read of the library a tab, to offer what changed
const NAME_CHARS = 26;
// one Tab stop a tile (three made a page of 60 photos 180 presses long); its other
// actions are keys on the focused photo (tileKey in viewer.js)
const TILE_KEYS = "Enter opens, x selects, l finds more like it, arrow keys move between photos";
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
  if (!st.listening) {  // first mount, or back after a release (below)
    document.addEventListener("keydown", st.onKey);
    window.addEventListener("popstate", st.onPop);
    st.poll = setInterval(() => pollLibrary(st), POLL_MS);
    st.listening = true;
    if (st.viewer && !st.viewer.hidden) document.body.style.overflow = "hidden";
  }
  render(st, data || {});
  performance.mark("searchapp-grid");  // for benchmarks/bench_page.py
  return () => release(st);
}

// Streamlit calls this when the grid leaves the page (another tab, a new mount): the page
// keeps no key handler of a grid that is gone, nor a body locked by its open viewer.
function release(st) {
  document.removeEventListener("keydown", st.onKey);
  window.removeEventListener("popstate", st.onPop);
  clearInterval(st.poll);
  st.listening = false;
  if (st.viewer && !st.viewer.hidden) document.body.style.overflow = "";
}

function setup(root, send) {
  const host = document.createElement("div");
  host.className = "gallery";
  host.innerHTML = `
    <button type="button" class="changes" hidden><svg viewBox="0 0 20 20" width="14"
      height="14" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.8">
      <path d="M16 10a6 6 0 1 1-2-4.5M16 3v4h-4"/></svg><span></span></button>
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
    viewer: null, index: -1, returnFocus: null, listening: false, afterBack: null,
    moreUntold: false,
  };
  host.querySelector(".more").addEventListener("click", () => showMore(st));
  host.querySelector(".changes").addEventListener("click", () => {
    showChanges(st, "");
    st.send("action", { kind: "refresh" });  // the photos rerun: what is there now
  });
  host.querySelector(".selbar").addEventListener("click", (e) => selectionAction(st, e));
  st.onKey = (e) => onKey(st, e);
  st.onPop = () => onPop(st);
  return st;
}

// ------------------------------------------------------------------ the grid
function render(st, data) {
  const tiles = data.tiles || [];
  const shown = st.viewer && !st.viewer.hidden && st.tiles[st.index];
  const open = shown ? shown.photo_id : null;
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
  st.drawn = data.drawn || null;
  showChanges(st, "");
  st.shown = Math.max(st.shown, data.show || st.page);
  reveal(st);
  st.host.querySelector(".more").textContent = data.more_label || "Load more";
  updateSelection(st);
  if (open !== null) {  // the viewer stays on its photo, wherever the new tiles put it
    const at = indexOfId(st, open);
    if (at >= 0) showInViewer(st, at);
    else closeViewer(st);
  }
}

// Photos indexed (or removed) since this grid was drawn, by the watcher or a terminal run:
// offered by a button, never drawn under the user's eyes (an open viewer, a half-typed
// query, a scrolled position stay until they ask).
function pollLibrary(st) {
  if (!st.drawn || !st.host.isConnected || document.visibilityState !== "visible") return;
  fetch("/photo/library", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((now) => { if (now) showChanges(st, changeText(st.drawn, now)); })
    .catch(() => {});
}

// The count is a net one (2 added and 1 deleted read "1 more"), so it says so: "1 new
// photo indexed" there hid the deletion.
function changeText(drawn, now) {
  if (now.generation === drawn.generation) return "";
  const added = now.photos - drawn.photos;
  const n = Math.abs(added).toLocaleString("en-US"), s = Math.abs(added) === 1 ? "" : "s";
  if (added > 0) return `${n} more photo${s} in the library`;
  return added < 0 ? `${n} photo${s} fewer in the library` : "Photos changed in the library";
}

function showChanges(st, text) {
  const button = st.host.querySelector(".changes");
  button.hidden = !text;
  button.querySelector("span").textContent = text ? `${text}: show` : "";
}

// Python sends a page more than is shown: "load more" shows it at once, from here, and
// asks Python for the next one in the background, so no click waits for a rerun.
function showMore(st) {
  st.shown += st.page;
  reveal(st);
  // always told, so the URL keeps the pages shown; Python sends the next page then. Not
  // while the viewer is open: the URL would change under the viewer's history entry
  // (closeViewer tells Python once that entry is gone).
  if (st.viewer && !st.viewer.hidden) st.moreUntold = true;
  else tellShown(st);
}

function tellShown(st) {
  st.moreUntold = false;
  // the pages go into this history entry first: Python then writes the same query, which
  // Streamlit pushes as a new entry only when it differs, so "load more" is no step of Back
  const url = new URL(window.location.href);
  url.searchParams.set("pages", String(Math.ceil(st.shown / st.page)));
  history.replaceState(history.state, "", url.toString());
  st.send("action", { kind: "more", shown: st.shown });
}

function reveal(st) {
  const upto = Math.min(st.shown, st.data.length);
  const start = st.tiles.length;
  st.tiles = st.data.slice(0, Math.max(upto, start));
  const fresh = [];
  for (let i = start; i < upto; i++) fresh.push(appendTile(st, st.data[i], i));
  loadThumbs(fresh);
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
      aria-description="${TILE_KEYS}" title="${escapeHtml(hint(tile))}"><img alt=""
      loading="lazy" decoding="async"></button>
    <span class="name">${escapeHtml(middle(name, NAME_CHARS))}</span>
    <label class="pick" title="Select (x)"><input type="checkbox" tabindex="-1"
      aria-label="Select ${escapeHtml(name)}"></label>
    <button type="button" class="like" tabindex="-1" title="More like this (l)"
      aria-label="More like ${escapeHtml(name)}">${LIKE_ICON}</button>`;
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
  img.addEventListener("error", () => {
    // a batched thumbnail let go (BATCH_KEEP) before this lazy tile came on screen: by URL
    if (img.src.startsWith("blob:")) img.src = img.dataset.src;
    else el.classList.add("missing");
  });
  img.dataset.src = thumbUrl(tile);
  img.dataset.hash = tile.content_hash || "";
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
  return img;
}

// Thumbnails in two waves of batched requests: those on screen first, then the rest. Set
// one by one, a page's sixty requests queued on the browser's six connections and the
// first screen waited behind tiles nobody saw yet.
function loadThumbs(imgs) {
  const now = [], later = [];
  for (const img of imgs) {
    (img.getBoundingClientRect().top < window.innerHeight ? now : later).push(img);
  }
  for (const img of now) img.loading = "eager";  // lazy waits for a layout pass to decide
  fetchBatch(now).then(() => fetchBatch(later));
}

// Thumbnails fetched in batches, by content hash (object URLs: the HTTP cache does not
// keep them); the oldest are let go past BATCH_KEEP.
const BATCHED = new Map();
const BATCH_KEEP = 600;

const BATCH_MAX = 60;  // the server's THUMBS_MAX

async function fetchBatch(imgs) {
  const hashes = [...new Set(imgs.map((i) => i.dataset.hash).filter((h) => h && !BATCHED.has(h)))];
  const batches = [];
  for (let i = 0; i < hashes.length; i += BATCH_MAX) batches.push(hashes.slice(i, i + BATCH_MAX));
  await Promise.all(batches.map(fetchThumbs));
  for (const img of imgs) img.src = BATCHED.get(img.dataset.hash) || img.dataset.src;
  await Promise.all(imgs.map(settled));
}

async function fetchThumbs(hashes) {
  try {
    const res = await fetch(`/photo/thumbs?h=${hashes.join(",")}`);
    const sizes = (res.headers.get("X-Thumb-Sizes") || "").split(",").map(Number);
    if (!res.ok || sizes.length !== hashes.length) throw new Error(`thumbs: ${res.status}`);
    const body = await res.arrayBuffer();
    let at = 0;
    hashes.forEach((hash, i) => {
      if (sizes[i] > 0) keepThumb(hash, body.slice(at, at + sizes[i]));
      at += sizes[i];
    });
  } catch (err) {
    console.warn(err);  // each loads by its own URL instead
  }
}

function keepThumb(hash, bytes) {
  BATCHED.set(hash, URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" })));
  if (BATCHED.size > BATCH_KEEP) {
    const [oldest, url] = BATCHED.entries().next().value;
    BATCHED.delete(oldest);
    URL.revokeObjectURL(url);  // an image already shown keeps its pixels
  }
}

function thumbSrc(tile) {
  return BATCHED.get(tile.content_hash) || thumbUrl(tile);
}

function settled(img) {
  return new Promise((done) => {
    if (img.complete) return done();
    img.addEventListener("load", done, { once: true });
    img.addEventListener("error", done, { once: true });
  });
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
  const parts = [baseName(tile.path), dateText(tile.taken)];
  if (tile.by_name) parts.push("name matches");
  else if (tile.score !== null && tile.score !== undefined) parts.push(`match ${relevance(tile.score)}`);
  return parts.join(" · ");
}

function relevance(score) {
  return score >= 0.3 ? "strong" : score >= 0.2 ? "good" : "weak";
}

// ------------------------------------------------------------------ selection
function downloadZip(st, link) {
  const out = st.host.querySelector(".selnote");
  if (!link.href) return;
  fetch(`${link.href}&check=1`, { credentials: "same-origin" })
    .then((r) => (r.ok ? "" : r.text().then((t) => t.trim() || `The zip was refused (${r.status}).`)))
    .then((refused) => {
      if (refused) note(out, refused);
      else window.location.assign(link.href);  // an attachment: downloads, stays here
    })
    .catch(() => note(out, "The page server did not answer; try again."));
}

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
  if (kind === "zip") {
    e.preventDefault();  // asked first: a refused download ends without a word
    downloadZip(st, e.target.closest("a"));
  } else if (kind === "copy") {
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
