/* Keyboard-first labeling: one key per answer, u undo, ? help; focus stays on the workspace. */
(function () {
  "use strict";
  var KEYS = { c: "btn-confirm", n: "btn-not", s: "btn-skip", u: "btn-undo" };

  function workspace() { return document.getElementById("workspace"); }
  function help() { return document.getElementById("help"); }

  function isTyping(target) {
    if (!target) return false;
    var tag = target.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable ||
      (tag === "INPUT" && target.type !== "hidden" && target.type !== "submit");
  }

  function busy() {
    // htmx marks the element whose request is in flight; one answer at a time. Panels that load
    // by themselves (similar cases) do not count: an answer never waits for them.
    return document.querySelector(".htmx-request:not([data-background-panel])") !== null;
  }

  // An answer key pressed while the case just swapped in is still settling.
  var deferredKey = null;

  function settling() {
    var ws = workspace();
    return ws !== null && ws.classList.contains("htmx-added");
  }

  function press(key) {
    var button = document.getElementById(KEYS[key]);
    if (button && !button.disabled) { button.click(); return; }
    refuse(key);
  }

  // A key with nothing to do says why, in place: never a silent no-op.
  function refuse(key) {
    var ws = workspace();
    var host = ws || document.getElementById("queue-page");
    if (!host) return;
    var why = (ws && ws.dataset.readOnly) || "";
    if (key === "u") {
      why = "Nothing to undo here: you have no recent answer on this case or this dataset.";
    } else if (!why) {
      why = ws ? "There is no open question on this page." : "Start labeling first (Enter).";
    }
    var box = document.getElementById("key-refused") || document.createElement("div");
    box.id = "key-refused";
    box.className = "flash info";
    box.setAttribute("role", "status");
    box.textContent = "Key " + key + ": " + why;
    if (!box.parentNode) host.insertBefore(box, host.children[1] || null);
  }

  function focusWorkspace() {
    var ws = workspace();
    if (ws) { ws.focus({ preventScroll: true }); return; }
    var start = document.getElementById("start-labeling");
    if (start && !start.disabled) start.focus();
  }

  function toggleHelp() {
    var dialog = help();
    if (!dialog) return;
    if (dialog.open) { dialog.close(); focusWorkspace(); } else { dialog.showModal(); }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) {
      if (event.key === "Escape") { event.target.blur(); focusWorkspace(); }
      return;
    }
    if (event.key === "?") { event.preventDefault(); toggleHelp(); return; }
    if (help() && help().open) return;
    if (KEYS[event.key]) {
      event.preventDefault();
      // The case is on screen but htmx has not settled it yet (~20 ms after a swap its new form
      // still wears the old one's classes, in-flight marker included, and is not wired): answer
      // as soon as it has settled, instead of losing the key.
      if (settling()) { deferredKey = event.key; return; }
      if (!busy()) press(event.key);
      return;
    }
    if (busy()) { event.preventDefault(); return; }
    if (event.key === "p" || event.key === "m") {
      var field = document.getElementById(event.key === "p" ? "pattern" : "comment");
      if (field) { event.preventDefault(); field.focus(); }
      return;
    }
    if (event.key === "Enter" && event.target === document.body) {
      var start = document.getElementById("start-labeling");
      if (start && !start.disabled) { event.preventDefault(); start.click(); }
    }
  });

  document.addEventListener("DOMContentLoaded", focusWorkspace);
  document.addEventListener("htmx:afterSwap", function (event) {
    // Panels that load by themselves (similar cases) must never pull the focus away from a field
    // the expert is typing in: only swaps of the case itself move focus and scroll.
    var elt = event.detail && event.detail.elt;
    if (elt && elt.closest && elt.closest("[data-background-panel]")) return;
    window.scrollTo(0, 0);
    focusWorkspace();
    var ws = workspace();
    if (ws && ws.dataset.caseId) document.title = "Case " + ws.dataset.caseId + " · " + ws.dataset.dataset;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (deferredKey === null || settling() || busy()) return;
    var key = deferredKey;
    deferredKey = null;
    press(key);
  });
  // A refused answer (409) carries its message: show it instead of dropping it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 409) { event.detail.shouldSwap = true; event.detail.isError = false; }
  });
  // Any other refusal or failure: say so in place, never fail silently.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status === 409) return;
    var ws = workspace();
    if (!ws) return;
    var box = document.getElementById("request-error") || document.createElement("div");
    box.id = "request-error";
    box.className = "flash error";
    box.setAttribute("role", "alert");
    box.textContent = status === 403
      ? "Refused (403): this case is not in your queue any more, or your session ended. Reload the page."
      : "The server could not process that (" + status + "). Nothing was stored; try again.";
    ws.insertBefore(box, ws.children[1] || null);
    focusWorkspace();
  });
  document.addEventListener("htmx:sendError", function () {
    var ws = workspace();
    if (ws && !document.getElementById("request-error")) {
      var box = document.createElement("div");
      box.id = "request-error";
      box.className = "flash error";
      box.textContent = "The server cannot be reached. Nothing was stored; try again.";
      ws.insertBefore(box, ws.children[1] || null);
    }
  });
  // The help dialog closes with Esc by itself; give the focus back when it does.
  document.addEventListener("close", function (event) {
    // Only when nothing else took the focus meanwhile (a key pressed right after Esc wins).
    var active = document.activeElement;
    var idle = !active || active === document.body || help().contains(active);
    if (event.target === help() && idle) focusWorkspace();
  }, true);
})();
