// The worker of the in-page step checker (see _ext/vaebook_checker.py and checker.js).
//
// It loads, once per page and only when a reader first asks for a check, the Pyodide core,
// the SymPy and mpmath wheels and the book's engine (vaebook.symbolic), all from this site's
// _static/checker/ folder, and answers the page's messages:
//   {id, box, spec, text}          -> {id, type: "result", result, seconds}
//   {id, box, spec, reset: true}   -> {id, type: "reset"}
// and while loading posts {type: "progress", phase, loaded, total}. Every request it makes
// stays on this site: a request for another origin is refused, not sent.

import { loadPyodide } from "./checker/pyodide/pyodide.mjs";

const base = new URL("./checker/", import.meta.url);
const post = (message) => self.postMessage(message);

// Count the bytes of every response (Pyodide's own requests included), and send nothing
// off the site.
let loaded = 0;
let total = 0;
let phase = "";
const siteFetch = self.fetch.bind(self);
self.fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : input, base);
  if (url.origin !== self.location.origin) {
    throw new Error(`the checker loads nothing from outside this site (${url.origin})`);
  }
  const response = await siteFetch(input, init);
  if (!response.ok || !response.body) return response;
  const reader = response.body.getReader();
  const counted = new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      loaded += value.byteLength;
      post({ type: "progress", phase, loaded, total });
      controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return new Response(counted, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
};

async function sha256(bytes) {
  if (!self.crypto || !self.crypto.subtle) return null; // not a secure context: no check
  const digest = await self.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

let pyodide = null;

async function start() {
  const started = performance.now();
  const manifest = await (await siteFetch(new URL("manifest.json", base))).json();
  total =
    Object.entries(manifest.files)
      .filter(([name]) => !name.endsWith(".mjs")) // modules are imported, not fetched
      .reduce((sum, [, size]) => sum + size, 0) +
    manifest.wheels.reduce((sum, w) => sum + w.size, 0);
  phase = "Python";
  post({ type: "progress", phase, loaded, total });
  const index = new URL("pyodide/", base).href;
  pyodide = await loadPyodide({
    indexURL: index,
    packageBaseUrl: index,
    stdout: () => {},
    stderr: () => {},
  });
  const site = pyodide.runPython("import sysconfig; sysconfig.get_path('purelib')");
  phase = "SymPy and the engine";
  for (const wheel of manifest.wheels) {
    const response = await self.fetch(new URL(`wheels/${wheel.file}`, base));
    if (!response.ok) throw new Error(`could not load ${wheel.file} (HTTP ${response.status})`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const digest = await sha256(bytes);
    if (digest !== null && digest !== wheel.sha256) {
      throw new Error(`${wheel.file} is not the file the book was built with (SHA-256 differs)`);
    }
    pyodide.unpackArchive(bytes, "wheel", { extractDir: site });
  }
  phase = "starting SymPy";
  post({ type: "progress", phase, loaded: total, total });
  pyodide.runPython("import importlib; importlib.invalidate_caches()");
  const checker = pyodide.pyimport("vaebook.symbolic.checker");
  post({ type: "ready", seconds: (performance.now() - started) / 1000 });
  return checker;
}

let ready = null;
const boxes = new Map(); // box id -> the Python Box (its derivation so far)

self.onmessage = async ({ data }) => {
  const { id, box, spec, text, reset } = data;
  try {
    ready ??= start().catch((err) => {
      ready = null; // the next check tries again
      throw err;
    });
    const checker = await ready;
    let current = boxes.get(box);
    if (!current || reset) {
      if (current) current.destroy();
      current = checker.Box(pyodide.toPy(spec));
      boxes.set(box, current);
    }
    if (reset) {
      post({ id, type: "reset" });
      return;
    }
    const t0 = performance.now();
    const result = JSON.parse(current.check_json(text));
    post({ id, type: "result", result, seconds: (performance.now() - t0) / 1000 });
  } catch (err) {
    // a Python error's message is its traceback: its last line says what went wrong
    const lines = String((err && err.message) || err).trim().split("\n");
    post({ id, type: "error", message: lines[lines.length - 1] });
  }
};
