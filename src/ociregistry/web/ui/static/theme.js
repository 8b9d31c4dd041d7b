// Applies the saved colour theme before the page paints (no flash of the wrong theme).
(function () {
  try {
    var theme = localStorage.getItem("ociregistry-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.setAttribute("data-theme", theme);
    }
  } catch (e) { /* storage unavailable: follow the system */ }
})();
