// Small enhancements; every page reads fine without them.
(function () {
  "use strict";

  // -- theme: automatic (system) -> light -> dark ---------------------------------
  var root = document.documentElement;
  var toggle = document.getElementById("theme-toggle");
  var names = { auto: "automatic", light: "light", dark: "dark" };
  function currentTheme() { return root.getAttribute("data-theme") || "auto"; }
  function showTheme() {
    var label = "Colour theme: " + names[currentTheme()];
    toggle.setAttribute("aria-label", label);
    toggle.title = label;
    toggle.dataset.theme = currentTheme();
  }
  if (toggle) {
    toggle.hidden = false;
    showTheme();
    toggle.addEventListener("click", function () {
      var next = { auto: "light", light: "dark", dark: "auto" }[currentTheme()];
      if (next === "auto") { root.removeAttribute("data-theme"); } else { root.setAttribute("data-theme", next); }
      try {
        if (next === "auto") { localStorage.removeItem("ociregistry-theme"); }
        else { localStorage.setItem("ociregistry-theme", next); }
      } catch (e) { /* not saved */ }
      showTheme();
    });
  }

  // -- copy buttons -------------------------------------------------------------------
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    var label = button.textContent;
    button.addEventListener("click", function () {
      copy(button.getAttribute("data-copy")).then(function () {
        button.textContent = "Copied";
        button.classList.add("copied");
      }, function () {
        button.textContent = "Press Ctrl+C";
      }).then(function () {
        setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1600);
      });
    });
  });

  // -- garbage collection progress ----------------------------------------------------
  var gc = document.getElementById("gc-status");
  if (gc && gc.dataset.running === "true") {
    var phase = document.getElementById("gc-phase");
    var bar = document.getElementById("gc-progress");
    var poll = function () {
      fetch(gc.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (s) {
          if (!s.running) { window.location.reload(); return; }
          if (phase) {
            phase.textContent = (s.phase || "starting") + (s.total ? ": " + s.done + " of " + s.total : "");
          }
          if (bar && s.total) { bar.max = s.total; bar.value = s.done; }
          setTimeout(poll, 1000);
        })
        .catch(function () { setTimeout(poll, 3000); });
    };
    setTimeout(poll, 700);
  }
})();
