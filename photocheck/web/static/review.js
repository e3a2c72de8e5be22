// Keyboard review on the contact sheet: j/k move between photos, a approve, r reject, x tick, o open.
// Only clicks the page's own buttons, so it offers nothing the page does not; everything works without it.
(function () {
  "use strict";
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("[data-photo]")); }
  function typing(el) { return el && el.matches && el.matches("input:not([type=checkbox]), textarea, select"); }
  document.addEventListener("DOMContentLoaded", function () {
    var target = location.hash && document.querySelector(location.hash);
    var first = cards()[0];
    if (target && target.hasAttribute("data-photo")) target.focus();
    else if (first && first.tagName === "ARTICLE") first.focus({preventScroll: true});
  });
  document.addEventListener("change", function (e) {
    var out = document.getElementById("ticked-count");
    if (out && e.target.matches("input[type=checkbox][form=bulk]")) {
      out.textContent = " — " + document.querySelectorAll("input[type=checkbox][form=bulk]:checked").length + " ticked";
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    var list = cards();
    var cur = e.target.closest ? e.target.closest("[data-photo]") : null;
    var i = cur ? list.indexOf(cur) : -1;
    if (e.key === "j" || e.key === "k") {
      i = e.key === "j" ? Math.min(i + 1, list.length - 1) : Math.max(i - 1, 0);
      if (list[i]) { list[i].focus(); list[i].scrollIntoView({block: "nearest"}); }
      e.preventDefault();
      return;
    }
    if (!cur) return;
    var sel = {a: "button[value=approve]", r: "button[value=reject]", x: "input[type=checkbox]", o: "a.open"}[e.key];
    var el = sel && cur.querySelector(sel);
    if (el) { el.click(); e.preventDefault(); }
  });
})();
