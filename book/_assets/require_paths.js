// Loaded between require.js and the ipywidgets HTML manager (see nb_ipywidgets_js in _config.yml).
// The manager finds its own files (the icon fonts its CSS names) through require.js's module path
// "@jupyter-widgets/html-manager/dist"; map that path to the copy served beside this file, whatever the
// page's depth, so nothing is asked of a CDN or of a wrong relative URL.
(function () {
  var staticDir = document.currentScript.src.replace(/[^\/]*$/, "");
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": staticDir + "vendor/html-manager" } });
})();
