// "Check your step": the boxes that _ext/vaebook_checker.py writes into the exercises.
//
// A reader types the next expression of a derivation; the book's engine (vaebook.symbolic,
// in Pyodide, in a worker: checker-worker.mjs) checks it and the box shows the engine's
// answer, typeset: accepted (with the families it was checked on) or refused (with the
// engine's reason). Nothing is loaded until the first check; then Python, SymPy and the
// engine load once for the page (about 20 MB, with progress shown) and stay loaded while
// it is open. Browsers run WebAssembly workers only on pages served over http(s): a page
// opened from a file says how to serve the book instead.
(() => {
  "use strict";
  const here = document.currentScript ? document.currentScript.src : document.baseURI;
  const workerURL = new URL("checker-worker.mjs", here);
  const TIMEOUT_S = 120; // a check that runs longer is stopped (the engine restarts)

  let worker = null;
  let nextId = 0;
  const pending = new Map(); // id -> {resolve, reject, timer, box}
  let loadedIn = null; // seconds the engine took to load, once loaded
  let activeBox = null; // the box that shows the loading progress
  const boxes = []; // every box on the page

  function typeset(el) {
    const mj = window.MathJax;
    if (!mj || !mj.typesetPromise) return Promise.resolve();
    const ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
    return ready.then(() => mj.typesetPromise([el])).catch(() => {});
  }

  function inlineMath(text) {
    // text with inline math $...$ (the engine's messages quote expressions that way)
    const out = document.createDocumentFragment();
    String(text).split("$").forEach((part, i) => {
      if (i % 2 === 0) {
        out.append(document.createTextNode(part));
      } else {
        const span = document.createElement("span");
        span.className = "math notranslate nohighlight";
        span.textContent = `\\(${part}\\)`;
        out.append(span);
      }
    });
    return out;
  }

  function displayMath(tex) {
    const div = document.createElement("div");
    div.className = "math notranslate nohighlight";
    div.textContent = `\\[${tex}\\]`;
    return div;
  }

  function element(tag, className, ...children) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    el.append(...children);
    return el;
  }

  function megabytes(bytes) {
    return (bytes / 1e6).toFixed(1);
  }

  function stopWorker(message) {
    if (worker) worker.terminate();
    worker = null;
    loadedIn = null;
    for (const box of boxes) box.chain.replaceChildren(); // the new engine starts afresh
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(message));
      pending.delete(id);
    }
  }

  function getWorker() {
    if (worker) return worker;
    worker = new Worker(workerURL, { type: "module" });
    worker.onmessage = ({ data }) => {
      if (data.type === "progress") {
        showProgress(data);
        return;
      }
      if (data.type === "ready") {
        loadedIn = data.seconds;
        if (activeBox) {
          activeBox.status.replaceChildren(
            `Python, SymPy and the engine loaded in ${loadedIn.toFixed(1)} s; ` +
              "they stay loaded while this page is open. Checking…"
          );
        }
        return;
      }
      const p = pending.get(data.id);
      if (!p) return;
      clearTimeout(p.timer);
      pending.delete(data.id);
      if (data.type === "error") p.reject(new Error(data.message));
      else p.resolve(data);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      stopWorker(
        "the checker could not start in this browser" +
          (event.message ? ` (${event.message})` : "") +
          "; the solution below shows the checked steps"
      );
    };
    return worker;
  }

  function ask(box, message) {
    return new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        stopWorker(
          `the engine did not finish within ${TIMEOUT_S} s, so this step was not checked ` +
            "(the engine was stopped; it loads again at the next check)"
        );
      }, TIMEOUT_S * 1000 + (loadedIn === null ? 600 * 1000 : 0)); // loading has its own time
      pending.set(id, { resolve, reject, timer, box });
      getWorker().postMessage({ id, box: box.el.id, spec: box.spec, ...message });
    });
  }

  function showProgress({ phase, loaded, total }) {
    if (!activeBox) return;
    const bar = element("progress", "vaebook-checker-progress");
    bar.max = total || 1;
    bar.value = Math.min(loaded, total || 1);
    const words =
      phase === "starting SymPy"
        ? "Starting SymPy and the engine…"
        : `Loading ${phase} for the checker (first use on this page): ` +
          `${megabytes(loaded)} of ${megabytes(total)} MB`;
    activeBox.status.replaceChildren(bar, " ", words);
  }

  function showAnswer(box, data) {
    const r = data.result;
    const took = ` (checked in ${data.seconds.toFixed(1)} s)`;
    const answer = element("div", `vaebook-checker-answer vaebook-checker-${r.status}`);
    if (r.status === "accepted") {
      answer.append(
        element("p", "", element("strong", "", "Accepted. "), element("em", "", inlineMath(r.verdict + ".")), took)
      );
      if (r.goal) answer.append(element("p", "", "This is the expression the exercise asks for."));
      box.chain.replaceChildren(displayMath(r.latex));
    } else if (r.status === "refused") {
      answer.append(
        element("p", "", element("strong", "", "Refused. "), inlineMath(r.message), took),
        element("p", "", "The step as the engine read it: ", inlineMath(`$${r.latex}$`))
      );
    } else if (r.status === "unreadable") {
      answer.append(element("p", "", element("strong", "", "Not read. "), `${r.message}.`));
    } else {
      answer.append(
        element("p", "", element("strong", "", "Not checked. "), "The engine stopped: ", r.message),
        element("p", "", "The step as read: ", inlineMath(`$${r.latex}$`))
      );
    }
    box.result.replaceChildren(answer);
    return typeset(box.el);
  }

  function servedFromFile(box) {
    const root = new URL(document.documentElement.dataset.content_root || "./", location.href);
    const page = location.href.startsWith(root.href) ? location.href.slice(root.href.length) : "";
    box.status.replaceChildren(
      "This page was opened from a file, and browsers run the checker (WebAssembly in a " +
        "worker) only on pages served over http. From the repository, run ",
      element("code", "", "python -m http.server -d _build/html"),
      " and open ",
      element("code", "", `http://localhost:8000/${page}`),
      "."
    );
    box.input.disabled = true;
    box.check.disabled = true;
    box.reset.disabled = true;
  }

  function setUp(el) {
    const box = {
      el,
      spec: JSON.parse(el.dataset.spec),
      input: el.querySelector(".vaebook-checker-input"),
      check: el.querySelector(".vaebook-checker-check"),
      reset: el.querySelector(".vaebook-checker-reset"),
      status: el.querySelector(".vaebook-checker-status"),
      result: el.querySelector(".vaebook-checker-result"),
      chain: element("div", "vaebook-checker-chain"),
    };
    box.result.before(box.chain);
    boxes.push(box);
    if (location.protocol === "file:") {
      servedFromFile(box);
      return;
    }
    el.querySelector("form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = box.input.value;
      if (!text.trim()) return;
      activeBox = box;
      box.check.disabled = true;
      box.result.replaceChildren();
      box.status.replaceChildren(loadedIn === null ? "Loading the checker…" : "Checking…");
      try {
        const data = await ask(box, { text });
        box.status.replaceChildren(
          loadedIn === null ? "" : `The engine runs in your browser (loaded in ${loadedIn.toFixed(1)} s).`
        );
        await showAnswer(box, data);
      } catch (err) {
        box.status.replaceChildren();
        box.result.replaceChildren(
          element("div", "vaebook-checker-answer vaebook-checker-unchecked",
            element("p", "", element("strong", "", "Not checked. "), `${err.message}.`))
        );
      } finally {
        box.check.disabled = false;
      }
    });
    box.reset.addEventListener("click", async () => {
      box.input.value = "";
      box.chain.replaceChildren();
      box.result.replaceChildren();
      if (worker && loadedIn !== null) {
        try {
          await ask(box, { reset: true });
        } catch (err) {
          box.status.replaceChildren(`${err.message}.`);
        }
      }
    });
  }

  function boot() {
    document.querySelectorAll(".vaebook-checker").forEach(setUp);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
