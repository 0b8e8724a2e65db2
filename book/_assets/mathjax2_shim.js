// ipywidgets' controls typeset their labels with the MathJax 2 call `MathJax.Hub.Queue(...)` whenever
// `window.MathJax` exists; the book loads MathJax 3, which has no `Hub`.  Give it one that does the
// MathJax 3 equivalent, so pages with both formulas and widgets raise no errors.
(function () {
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
        ready.then(function () {
          if (mj.typesetPromise) return mj.typesetPromise(element ? [element] : undefined);
        }).catch(function () {});
      }
    };
  }
  addHub();
  document.addEventListener("DOMContentLoaded", addHub);
  window.addEventListener("load", addHub);
})();
